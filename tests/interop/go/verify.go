// Command verify checks Veridict's signed notes and Merkle proofs with Go's golang.org/x/mod/sumdb
// packages, an implementation that shares no code with Veridict: JSON checks in, JSON verdicts out.
//
// Input on stdin:
//
//	{"verifier_keys": ["<name>+<hex id>+<base64 key>"],
//	 "public_keys":   [{"name": "...", "key_hex": "<32-byte Ed25519 key>"}],
//	 "notes":         ["<signed note>"],
//	 "inclusion":     [{"checkpoint": "<signed note>" | "tree_size": n, "root_hex": "...",
//	                    "index": i, "leaf_hash_hex": "...", "proof_hex": ["..."]}],
//	 "consistency":   [{"old_checkpoint": "..." | "old_size": m, "old_root_hex": "...",
//	                    "new_checkpoint": "..." | "new_size": n, "new_root_hex": "...",
//	                    "proof_hex": ["..."]}]}
//
// A checkpoint, when given, is opened with the verifier keys and its size and root are read from its
// signed text (C2SP tlog-checkpoint: origin, size, base64 root). Every check answers {"ok", "error"};
// an opened note also gives its text and the keys whose signatures verified.
package main

import (
	"crypto/ed25519"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"strconv"
	"strings"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

type publicKey struct {
	Name   string `json:"name"`
	KeyHex string `json:"key_hex"`
}

type inclusionCheck struct {
	Checkpoint  string   `json:"checkpoint"`
	TreeSize    int64    `json:"tree_size"`
	RootHex     string   `json:"root_hex"`
	Index       int64    `json:"index"`
	LeafHashHex string   `json:"leaf_hash_hex"`
	ProofHex    []string `json:"proof_hex"`
}

type consistencyCheck struct {
	OldCheckpoint string   `json:"old_checkpoint"`
	OldSize       int64    `json:"old_size"`
	OldRootHex    string   `json:"old_root_hex"`
	NewCheckpoint string   `json:"new_checkpoint"`
	NewSize       int64    `json:"new_size"`
	NewRootHex    string   `json:"new_root_hex"`
	ProofHex      []string `json:"proof_hex"`
}

type input struct {
	VerifierKeys []string           `json:"verifier_keys"`
	PublicKeys   []publicKey        `json:"public_keys"`
	Notes        []string           `json:"notes"`
	Inclusion    []inclusionCheck   `json:"inclusion"`
	Consistency  []consistencyCheck `json:"consistency"`
}

type verdict struct {
	OK    bool   `json:"ok"`
	Error string `json:"error,omitempty"`
}

type noteVerdict struct {
	verdict
	Text    string   `json:"text,omitempty"`
	Signers []string `json:"signers,omitempty"`
}

type keyVerdict struct {
	verdict
	VerifierKey string `json:"verifier_key,omitempty"`
}

type output struct {
	VerifierKeys []verdict     `json:"verifier_keys"`
	PublicKeys   []keyVerdict  `json:"public_keys"`
	Notes        []noteVerdict `json:"notes"`
	Inclusion    []verdict     `json:"inclusion"`
	Consistency  []verdict     `json:"consistency"`
}

func failed(err error) verdict {
	return verdict{OK: false, Error: err.Error()}
}

func parseHash(text string) (tlog.Hash, error) {
	var h tlog.Hash
	raw, err := hex.DecodeString(text)
	if err != nil {
		return h, fmt.Errorf("hash %q is not hex: %v", text, err)
	}
	if len(raw) != tlog.HashSize {
		return h, fmt.Errorf("hash %q is %d bytes, not %d", text, len(raw), tlog.HashSize)
	}
	copy(h[:], raw)
	return h, nil
}

func parseHashes(texts []string) ([]tlog.Hash, error) {
	hashes := make([]tlog.Hash, 0, len(texts))
	for _, text := range texts {
		h, err := parseHash(text)
		if err != nil {
			return nil, err
		}
		hashes = append(hashes, h)
	}
	return hashes, nil
}

// treeHead is the size and root of a tree: from a signed checkpoint if one is given, else as stated.
func treeHead(checkpoint string, size int64, rootHex string, known note.Verifiers) (int64, tlog.Hash, error) {
	if checkpoint == "" {
		root, err := parseHash(rootHex)
		return size, root, err
	}
	opened, err := note.Open([]byte(checkpoint), known)
	if err != nil {
		return 0, tlog.Hash{}, fmt.Errorf("checkpoint: %v", err)
	}
	lines := strings.Split(opened.Text, "\n")
	if len(lines) < 4 {
		return 0, tlog.Hash{}, fmt.Errorf("checkpoint text has %d lines", len(lines))
	}
	size, err = strconv.ParseInt(lines[1], 10, 64)
	if err != nil || size < 0 {
		return 0, tlog.Hash{}, fmt.Errorf("checkpoint size %q is not a number", lines[1])
	}
	raw, err := base64.StdEncoding.DecodeString(lines[2])
	if err != nil || len(raw) != tlog.HashSize {
		return 0, tlog.Hash{}, fmt.Errorf("checkpoint root %q is not a base64 hash", lines[2])
	}
	var root tlog.Hash
	copy(root[:], raw)
	return size, root, nil
}

func checkInclusion(c inclusionCheck, known note.Verifiers) verdict {
	size, root, err := treeHead(c.Checkpoint, c.TreeSize, c.RootHex, known)
	if err != nil {
		return failed(err)
	}
	leaf, err := parseHash(c.LeafHashHex)
	if err != nil {
		return failed(err)
	}
	proof, err := parseHashes(c.ProofHex)
	if err != nil {
		return failed(err)
	}
	if err := tlog.CheckRecord(tlog.RecordProof(proof), size, root, c.Index, leaf); err != nil {
		return failed(err)
	}
	return verdict{OK: true}
}

func checkConsistency(c consistencyCheck, known note.Verifiers) verdict {
	oldSize, oldRoot, err := treeHead(c.OldCheckpoint, c.OldSize, c.OldRootHex, known)
	if err != nil {
		return failed(err)
	}
	newSize, newRoot, err := treeHead(c.NewCheckpoint, c.NewSize, c.NewRootHex, known)
	if err != nil {
		return failed(err)
	}
	proof, err := parseHashes(c.ProofHex)
	if err != nil {
		return failed(err)
	}
	if err := tlog.CheckTree(tlog.TreeProof(proof), newSize, newRoot, oldSize, oldRoot); err != nil {
		return failed(err)
	}
	return verdict{OK: true}
}

func main() {
	var in input
	if err := json.NewDecoder(os.Stdin).Decode(&in); err != nil {
		fmt.Fprintln(os.Stderr, "verify: input is not JSON:", err)
		os.Exit(2)
	}
	out := output{
		VerifierKeys: []verdict{},
		PublicKeys:   []keyVerdict{},
		Notes:        []noteVerdict{},
		Inclusion:    []verdict{},
		Consistency:  []verdict{},
	}

	var verifiers []note.Verifier
	for _, vkey := range in.VerifierKeys {
		v, err := note.NewVerifier(vkey)
		if err != nil {
			out.VerifierKeys = append(out.VerifierKeys, failed(err))
			continue
		}
		verifiers = append(verifiers, v)
		out.VerifierKeys = append(out.VerifierKeys, verdict{OK: true})
	}
	known := note.VerifierList(verifiers...)

	for _, pk := range in.PublicKeys {
		raw, err := hex.DecodeString(pk.KeyHex)
		if err != nil || len(raw) != ed25519.PublicKeySize {
			out.PublicKeys = append(out.PublicKeys, keyVerdict{verdict: verdict{Error: "public key is not 32 hex bytes"}})
			continue
		}
		vkey, err := note.NewEd25519VerifierKey(pk.Name, ed25519.PublicKey(raw))
		if err != nil {
			out.PublicKeys = append(out.PublicKeys, keyVerdict{verdict: failed(err)})
			continue
		}
		out.PublicKeys = append(out.PublicKeys, keyVerdict{verdict: verdict{OK: true}, VerifierKey: vkey})
	}

	for _, msg := range in.Notes {
		opened, err := note.Open([]byte(msg), known)
		if err != nil {
			out.Notes = append(out.Notes, noteVerdict{verdict: failed(err)})
			continue
		}
		signers := []string{}
		for _, sig := range opened.Sigs {
			signers = append(signers, fmt.Sprintf("%s+%08x", sig.Name, sig.Hash))
		}
		out.Notes = append(out.Notes, noteVerdict{verdict: verdict{OK: true}, Text: opened.Text, Signers: signers})
	}

	for _, c := range in.Inclusion {
		out.Inclusion = append(out.Inclusion, checkInclusion(c, known))
	}
	for _, c := range in.Consistency {
		out.Consistency = append(out.Consistency, checkConsistency(c, known))
	}

	encoder := json.NewEncoder(os.Stdout)
	if err := encoder.Encode(out); err != nil {
		fmt.Fprintln(os.Stderr, "verify:", err)
		os.Exit(2)
	}
}
