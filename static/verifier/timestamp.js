// RFC 3161 time-stamps checked against a pinned TSA CA, with the vendored pkijs (CMS) and asn1js.

import * as pkijs from "pkijs";
import { equal, fromBase64, sha256 } from "./bytes.js";

export class TimestampError extends Error {}

const TST_INFO_OID = "1.2.840.113549.1.9.16.1.4";
const SHA256_OID = "2.16.840.1.101.3.4.2.1";
const EKU_OID = "2.5.29.37";
const TIME_STAMPING_OID = "1.3.6.1.5.5.7.3.8";

function pemCertificates(pem) {
  const blocks = [
    ...String(pem).matchAll(/-----BEGIN CERTIFICATE-----([^-]+)-----END CERTIFICATE-----/g),
  ];
  const certificates = blocks.map(([, body]) => {
    const der = fromBase64(body.replace(/\s+/g, ""));
    if (der === null) throw new Error("not base64");
    return pkijs.Certificate.fromBER(der);
  });
  if (!certificates.length) throw new Error("no certificate");
  return certificates;
}

// The pinned PEM last parsed: a page verifies many receipts against the same pins.
let lastRoots = { pem: null, certificates: null };

function pinnedRoots(caPem) {
  if (lastRoots.pem === caPem) return lastRoots.certificates;
  try {
    lastRoots = { pem: caPem, certificates: pemCertificates(caPem) };
    return lastRoots.certificates;
  } catch {
    throw new TimestampError(
      "the pinned TSA CA is not a PEM certificate: pass the CA certificate from the keys page",
    );
  }
}

function decode(tsrDer) {
  let response;
  let signedData;
  let tstInfo;
  try {
    response = pkijs.TimeStampResp.fromBER(tsrDer);
  } catch (error) {
    throw new TimestampError(
      `the time-stamp is not a DER RFC 3161 TimeStampResp (${error.message}); a bare token or ` +
        "base64 text must be turned into the whole DER response first",
    );
  }
  if (response.status.status !== 0) {
    const reasons = response.status.statusStrings?.map((text) => text.valueBlock.value).join("; ");
    throw new TimestampError(
      `the TSA did not grant this time-stamp (status ${response.status.status}: ` +
        `${reasons || "no reason given"})`,
    );
  }
  try {
    signedData = new pkijs.SignedData({ schema: response.timeStampToken.content });
    if (signedData.encapContentInfo.eContentType !== TST_INFO_OID) throw new Error("not a TSTInfo");
    tstInfo = pkijs.TSTInfo.fromBER(signedData.encapContentInfo.eContent.getValue());
  } catch (error) {
    throw new TimestampError(`the time-stamp's token is missing or malformed (${error.message})`);
  }
  const certificates = (signedData.certificates ?? []).filter(
    (certificate) => certificate instanceof pkijs.Certificate,
  );
  if (!certificates.length) {
    throw new TimestampError(
      "the time-stamp does not carry the TSA certificate (it was requested without " +
        "certReq), so it cannot be checked against the pinned CA",
    );
  }
  return { signedData, tstInfo };
}

/** RFC 3161 §2.3: the signer certificate holds the time-stamping purpose, marked critical. */
function checkTimeStampingPurpose(certificate) {
  const eku = (certificate.extensions ?? []).find((extension) => extension.extnID === EKU_OID);
  if (!eku) throw new Error("The certificate does not contain the critical EKU extension.");
  if (!eku.critical) throw new Error("The EKU extension is not critical.");
  if (!eku.parsedValue?.keyPurposes?.includes(TIME_STAMPING_OID)) {
    throw new Error("The EKU extension does not have KeyPurposeID id-kp-timeStamping.");
  }
}

/**
 * Checks a DER TimeStampResp over SHA-256(message) against the pinned CA (PEM text, one or more
 * certificates); returns genTime as a Date. TimestampError says what does not hold.
 */
export async function timestampVerify(tsrDer, { message, caPem }) {
  const roots = pinnedRoots(caPem);
  const { signedData, tstInfo } = decode(tsrDer);
  const imprint = tstInfo.messageImprint;
  // pkijs checks the imprint against the message inside SignedData.verify; checked first here,
  // each failure gets its own explanation.
  if (imprint.hashAlgorithm.algorithmId !== SHA256_OID) {
    throw new TimestampError(
      `the time-stamp covers a digest made with ${imprint.hashAlgorithm.algorithmId}, ` +
        "not SHA-256 as Veridict time-stamps do",
    );
  }
  const hashed = new Uint8Array(imprint.hashedMessage.valueBlock.valueHexView);
  if (!equal(hashed, await sha256(message))) {
    throw new TimestampError("the time-stamp covers a different message");
  }
  try {
    if (signedData.signerInfos.length !== 1) {
      throw new Error(`Expected exactly one SignerInfo, got ${signedData.signerInfos.length}.`);
    }
    // The signature over the signed attributes, their message digest of the TSTInfo, and the
    // signer certificate's chain to a pinned CA, valid at genTime.
    const result = await signedData.verify({
      signer: 0,
      data: message.slice().buffer,
      trustedCerts: roots,
      checkChain: true,
      extendedMode: true,
    });
    if (!result.signatureVerified) throw new Error("the signature does not verify");
    checkTimeStampingPurpose(result.signerCertificate);
  } catch (error) {
    throw new TimestampError(
      `the time-stamp is not signed by the pinned TSA CA (${error.message})`,
    );
  }
  return tstInfo.genTime;
}
