"""C2SP signed notes: key ids, verifier key strings, signing, opening and refusing notes."""

from __future__ import annotations

import base64
import hashlib

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from veridict_verify.note import NoteError, VerifierKey, key_id, note_open, note_sign, note_split

# The example key and note of Go's golang.org/x/mod/sumdb/note documentation (an implementation
# that is not ours): the private key's base64 is 0x01 || the 32-byte Ed25519 seed.
GO_SIGNER_KEY = "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz"
GO_VERIFIER_KEY = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
GO_TEXT = (
    "If you think cryptography is the answer to your problem,\n"
    "then you don't know what your problem is.\n"
)
GO_NOTE = (
    GO_TEXT + "\n"
    "\u2014 PeterNeumann "
    "x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n"
)

NAME = "veridict.test/log"
TEXT = "veridict.test/log\n42\nq6yroAAAAAAAAAAAAAAAAAAAAAAAAAAAAGAGHgASNFY=\n"


def go_private_key() -> Ed25519PrivateKey:
    encoded = GO_SIGNER_KEY.split("+", 4)[4]  # base64 may itself hold "+"
    return Ed25519PrivateKey.from_private_bytes(base64.b64decode(encoded)[1:])


def raw_public(key: Ed25519PrivateKey) -> bytes:
    return key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


@pytest.fixture(scope="module")
def private_key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


@pytest.fixture(scope="module")
def verifier(private_key: Ed25519PrivateKey) -> VerifierKey:
    return VerifierKey.from_public_key(NAME, private_key.public_key())


def signature_line(note: str) -> str:
    return note.rstrip("\n").rsplit("\n", 1)[1]


def resigned_line(name: str, claimed_id: bytes, signature: bytes) -> str:
    return f"\u2014 {name} {base64.b64encode(claimed_id + signature).decode()}\n"


# --- Key ids and verifier key strings. ---


def test_the_key_id_is_the_first_four_bytes_of_sha256_of_name_newline_algorithm_and_key(
    private_key,
):
    public = raw_public(private_key)
    by_hand = hashlib.sha256(NAME.encode() + b"\n" + b"\x01" + public).digest()[:4]
    assert key_id(NAME, public) == by_hand
    assert VerifierKey.from_public_key(NAME, private_key.public_key()).key_id == by_hand


def test_the_verifier_key_string_is_name_plus_hex_id_plus_base64_of_algorithm_and_key(
    verifier, private_key
):
    name, hex_id, encoded = str(verifier).split("+", 2)
    assert name == NAME
    assert hex_id == verifier.key_id.hex() and len(hex_id) == 8 and hex_id == hex_id.lower()
    assert base64.b64decode(encoded) == b"\x01" + raw_public(private_key)
    assert VerifierKey.parse(str(verifier)) == verifier


def test_a_verifier_key_whose_base64_holds_plus_signs_parses():
    # About half of all keys have a "+" in their base64; only the first two "+" separate fields.
    keys = (
        VerifierKey.from_public_key(
            NAME, Ed25519PrivateKey.from_private_bytes(bytes([n]) * 32).public_key()
        )
        for n in range(256)
    )
    verifier = next(key for key in keys if "+" in str(key).split("+", 2)[2])
    assert VerifierKey.parse(str(verifier)) == verifier


def test_our_verifier_key_string_is_the_one_go_derives_for_the_same_key():
    ours = VerifierKey.from_public_key("PeterNeumann", go_private_key().public_key())
    assert str(ours) == GO_VERIFIER_KEY
    assert ours.key_id == bytes.fromhex("c74f20a3")


def test_we_sign_a_note_exactly_as_go_does_and_open_go_notes():
    # Ed25519 signatures are deterministic, so the same key and text give the same bytes.
    assert note_sign(GO_TEXT, "PeterNeumann", go_private_key()) == GO_NOTE
    text, key = note_open(GO_NOTE, [VerifierKey.parse(GO_VERIFIER_KEY)])
    assert text == GO_TEXT and key.name == "PeterNeumann"


# --- Signing and opening. ---


def test_a_signed_note_opens_to_its_text_with_the_pinned_key(private_key, verifier):
    note = note_sign(TEXT, NAME, private_key)
    assert note.startswith(TEXT + "\n\u2014 " + NAME + " ")
    text, key = note_open(note, [verifier])
    assert (text, key) == (TEXT, verifier)
    assert note_split(note)[1][0][:2] == (NAME, verifier.key_id)


def test_a_note_opens_with_any_one_pinned_key_that_signed_it(private_key, verifier):
    other = VerifierKey.from_public_key("other.test/log", Ed25519PrivateKey.generate().public_key())
    note = note_sign(TEXT, NAME, private_key)
    assert note_open(note, [other, verifier]) == (TEXT, verifier)


def test_a_note_signed_only_by_a_key_that_is_not_pinned_is_refused(private_key):
    stranger = Ed25519PrivateKey.generate()
    note = note_sign(TEXT, NAME, stranger)
    with pytest.raises(NoteError, match="no pinned key"):
        note_open(note, [VerifierKey.from_public_key(NAME, private_key.public_key())])
    with pytest.raises(NoteError):
        note_open(note, [])


def test_an_extra_signature_by_an_unknown_key_is_ignored(private_key, verifier):
    note = note_sign(TEXT, NAME, private_key)
    foreign = signature_line(note_sign(TEXT, "witness.test", Ed25519PrivateKey.generate()))
    assert note_open(note + foreign + "\n", [verifier]) == (TEXT, verifier)


def test_a_signature_under_a_pinned_name_and_id_that_does_not_verify_is_refused(
    private_key, verifier
):
    forged_signature = Ed25519PrivateKey.generate().sign(TEXT.encode())
    forged = TEXT + "\n" + resigned_line(NAME, verifier.key_id, forged_signature)
    with pytest.raises(NoteError, match="does not verify"):
        note_open(forged, [verifier])
    # a good signature after a bad one by the pinned key does not excuse the bad one
    good = signature_line(note_sign(TEXT, NAME, private_key))
    with pytest.raises(NoteError):
        note_open(forged + good + "\n", [verifier])


def test_a_signature_of_the_wrong_length_under_a_pinned_key_is_refused(verifier):
    for signature in (b"\x00", bytes(63), bytes(65)):
        with pytest.raises(NoteError):
            note_open(TEXT + "\n" + resigned_line(NAME, verifier.key_id, signature), [verifier])


def test_a_note_whose_text_changed_by_one_byte_is_refused(private_key, verifier):
    note = note_sign(TEXT, NAME, private_key)
    for position in range(len(TEXT) - 1):  # the last byte is the newline the format needs
        original = TEXT[position]
        replacement = "0" if original != "0" else "1"
        tampered = note[:position] + replacement + note[position + 1 :]
        with pytest.raises(NoteError):
            note_open(tampered, [verifier])


def test_a_note_whose_signature_changed_by_one_bit_is_refused(private_key, verifier):
    note = note_sign(TEXT, NAME, private_key)
    line = signature_line(note)
    raw = bytearray(base64.b64decode(line.rsplit(" ", 1)[1]))
    raw[20] ^= 0x04
    tampered = note.replace(line, f"\u2014 {NAME} {base64.b64encode(bytes(raw)).decode()}")
    with pytest.raises(NoteError):
        note_open(tampered, [verifier])


def test_only_text_ending_in_a_newline_without_a_blank_line_can_be_signed(private_key):
    for text in ("no newline", "a\n\nb\n", ""):
        with pytest.raises(NoteError):
            note_sign(text, NAME, private_key)


# --- Malformed notes. ---


@pytest.fixture
def good_note(private_key: Ed25519PrivateKey) -> str:
    return note_sign(TEXT, NAME, private_key)


@pytest.mark.parametrize(
    "mangle",
    [
        pytest.param(lambda note: note.replace("\n\n", "\n"), id="no blank line"),
        pytest.param(lambda note: note.split("\n\n")[0] + "\n\n", id="no signatures"),
        pytest.param(lambda note: note.rstrip("\n"), id="no final newline"),
        pytest.param(lambda note: note.replace("\u2014 ", "- "), id="a hyphen for the em dash"),
        pytest.param(lambda note: note.replace("\u2014 ", ""), id="no em dash"),
        pytest.param(lambda note: note[:-2] + "!\n", id="bad base64"),
        pytest.param(lambda note: note.rsplit(" ", 1)[0] + " \n", id="empty signature"),
        pytest.param(
            lambda note: note.rsplit(" ", 1)[0] + " AAAA\n", id="signature shorter than a key id"
        ),
        pytest.param(lambda note: note + "trailing words\n", id="a line that is not a signature"),
    ],
)
def test_a_malformed_note_raises_note_error(good_note: str, verifier: VerifierKey, mangle):
    with pytest.raises(NoteError):
        note_open(mangle(good_note), [verifier])


def test_a_note_without_signatures_is_malformed_even_before_keys_are_consulted():
    for note in (TEXT, TEXT + "\n", ""):
        with pytest.raises(NoteError):
            note_split(note)


# --- Parsing verifier keys. ---


def test_a_verifier_key_with_a_wrong_key_id_is_refused(verifier):
    name, hex_id, encoded = str(verifier).split("+", 2)
    wrong = (int(hex_id, 16) ^ 1).to_bytes(4, "big").hex()
    with pytest.raises(NoteError, match="does not match"):
        VerifierKey.parse(f"{name}+{wrong}+{encoded}")
    with pytest.raises(NoteError):
        VerifierKey.parse(f"other.name+{hex_id}+{encoded}")  # the id binds the name too


def test_a_verifier_key_with_another_algorithm_byte_is_refused(private_key):
    public = raw_public(private_key)
    for algorithm in (b"\x00", b"\x02", b"\xff"):
        claimed = hashlib.sha256(NAME.encode() + b"\n" + algorithm + public).digest()[:4]
        # even with the id computed over that algorithm byte, only Ed25519 (0x01) is accepted
        text = f"{NAME}+{claimed.hex()}+{base64.b64encode(algorithm + public).decode()}"
        with pytest.raises(NoteError, match="Ed25519"):
            VerifierKey.parse(text)


@pytest.mark.parametrize(
    "mangle",
    [
        pytest.param(lambda name, hex_id, encoded: f"{name}+{hex_id}", id="two parts"),
        pytest.param(lambda name, hex_id, encoded: f"{name}+{hex_id}+{encoded}+x", id="four parts"),
        pytest.param(
            lambda name, hex_id, encoded: f"{name}+{hex_id}+{encoded[:-4]}", id="short key"
        ),
        pytest.param(lambda name, hex_id, encoded: f"{name}+{hex_id}+{encoded}AAAA", id="long key"),
        pytest.param(
            lambda name, hex_id, encoded: f"{name}+{hex_id}+{encoded[:-1]}!", id="bad base64"
        ),
        pytest.param(lambda name, hex_id, encoded: f"{name}+{hex_id[:6]}+{encoded}", id="short id"),
        pytest.param(lambda name, hex_id, encoded: f"{name}+{hex_id}00+{encoded}", id="long id"),
        pytest.param(
            lambda name, hex_id, encoded: f"{name}+zz{hex_id[2:]}+{encoded}", id="id not hex"
        ),
        pytest.param(lambda name, hex_id, encoded: f"+{hex_id}+{encoded}", id="empty name"),
        pytest.param(
            lambda name, hex_id, encoded: f"a name+{hex_id}+{encoded}", id="space in name"
        ),
    ],
)
def test_a_badly_encoded_verifier_key_is_refused(verifier: VerifierKey, mangle):
    name, hex_id, encoded = str(verifier).split("+", 2)
    with pytest.raises(NoteError):
        VerifierKey.parse(mangle(name, hex_id, encoded))
