#!/usr/bin/env python3
"""Writes the committed fuzz seed corpus (fuzz/seeds/<target>/). Synthetic people only; every NHS
number is from the 999 test range. Sealed and signed seeds use the harness's fixed fuzz keys, so
libFuzzer starts from inputs that reach past the signature and the seal."""
import base64, json, os, uuid
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives import hashes, serialization

HERE = os.path.dirname(os.path.abspath(__file__))
RAW = serialization.Encoding.Raw, serialization.PublicFormat.Raw
# Same fixed keys as fuzz_targets/region_page.rs and fuzz_targets/event_batch.rs.
PAGE_KEY = Ed25519PrivateKey.from_private_bytes(bytes([0x5A] * 32))
FEED_KEY = bytes([0x33] * 32)  # the region's feed key, id "v1"
SEAL_PUBLIC = X25519PrivateKey.from_private_bytes(bytes([0x42] * 32)).public_key().public_bytes(*RAW)


def write(target, name, data):
    os.makedirs(os.path.join(HERE, target), exist_ok=True)
    with open(os.path.join(HERE, target, name), "wb") as f:
        f.write(data if isinstance(data, bytes) else data.encode())


def b64(b):
    return base64.b64encode(b).decode()


# --- nhs_number: valid 999-range numbers in each typed form, and each kind of refusal
for i, text in enumerate([
    "9990000018", "999 000 0026", "999-000-0034", "  9990000042 ", "999 000 0050",
    "9990000019", "999000001", "99900000181", "99900000a8", "9990000000", "", " - ",
]):
    write("nhs_number", f"seed-{i:02}", text)

# --- la_upload: one well-formed file, and files with each kind of bad row
HEADER = "nhs_number,family_name,given_names,date_of_birth,plan_kind,start_date,end_date,due_date,local_id,delete_date\n"
write("la_upload", "good.csv", HEADER +
      "9990000018,Testwood,Sam,2018-01-02,CPPI,2025-01-01,,,C1,\n"
      "9990000018,Testwood,Sam,2018-01-02,LACI,2025-02-01,2025-06-01,,C1,2027-01-01\n"
      "9990000026,Fieldmoor,Ari Jo,1999-03-04,UCPI,2025-01-01,,2025-09-01,,\n")
write("la_upload", "bad-rows.csv", "\ufeff" + HEADER +
      "9990000034,Hillcrest,Jo,2019-03-04,XYZ,2025-01-01,,,,\n"
      "9990000042,Brook,Lee,2019-13-04,CPPI,2025-01-01,,,,\n"
      "9990000050,Stone,Kit,2019-03-04,CPPI,2025-01-01,2024-01-01,,,\n"
      "9990000069,Vale,Max,2019-03-04,CPPI,2025-01-01,,,,,extra\n"
      "9990000077,\"Quoted, Name\",\"Multi\nLine\",2019-03-04,laci,2025-01-01,,,,\n"
      "9990000085,Ash,Rae,2019-03-04,CPPI,2025-01-01,,,,\n"
      "9990000085,Ash,Ray,2019-03-04,LACI,2025-01-01,,,,\n"
      ",,,,,,,,,\n")
write("la_upload", "reordered.csv",
      "delete_date,local_id,due_date,end_date,start_date,plan_kind,date_of_birth,given_names,family_name,nhs_number\n"
      ",,,,2025-01-01,CPPI,2018-01-02,Sam,Testwood,999 000 0093\n")
write("la_upload", "header-only.csv", "nhs_number,family_name\n")

# --- region_page: a page with every kind of op, as a bare body and as a signed envelope
page = {
    "region": "north", "after": 0, "last": 4, "head": 9, "has_more": True,
    "generated_at": "2026-01-02T03:04:05.123456Z",
    "ops": [
        {"seq": 1, "op": "put_la", "la": {"ods": "L001", "name": "Synthetic Borough Council",
                                          "emergency_phone": "0300 555 0101", "office_phone": None,
                                          "region": "north"}},
        {"seq": 2, "op": "put_flag", "record": {
            "nhs_number": "9990000018", "family_name": "Testwood", "given_names": "Sam",
            "date_of_birth": "2018-01-02", "local_id": "C1", "local_authority": "L001",
            "plans": [{"kind": "CPPI", "start": "2025-01-01", "end": None, "due": None, "delete": None},
                      {"kind": "UCPI", "start": "2025-01-01", "end": "2025-05-01", "due": "2025-06-01",
                       "delete": "2027-01-01"}]}},
        {"seq": 3, "op": "remove_flag", "nhs_number": "9990000026"},
        {"seq": 4, "op": "remove_la", "ods": "L002"},
    ],
}
body = json.dumps(page, separators=(",", ":")).encode()
write("region_page", "page.json", body)
# As sent: the page sealed to the feed key (its place in the feed as associated data), then signed.
nonce = bytes(12)
aad = b"cpis-field/feed-page/v2\nnorth\n0\n4\nv1"
envelope = json.dumps({
    "region": "north", "after": 0, "last": 4, "head": 9, "has_more": True, "key_id": "v1",
    "sealed": b64(nonce + AESGCM(FEED_KEY).encrypt(nonce, body, aad)),
}, separators=(",", ":")).encode()
signature = PAGE_KEY.sign(b"cpis-field/feed-page/v2\n" + envelope)
write("region_page", "signed.json", json.dumps({"body": b64(envelope), "signature": b64(signature)}))
write("region_page", "signed-bad.json", json.dumps({"body": b64(envelope), "signature": b64(bytes(64))}))
empty = dict(page, ops=[], has_more=False, last=0)
write("region_page", "empty.json", json.dumps(empty))


# --- event_batch: an access event, and a batch holding it sealed to the central's fixed key
def seal_to(recipient_public, aad, plaintext):
    eph = X25519PrivateKey.generate()
    eph_public = eph.public_key().public_bytes(*RAW)
    shared = eph.exchange(X25519PublicKey.from_public_bytes(recipient_public))
    key = HKDF(hashes.SHA256(), 32, eph_public + recipient_public, b"cpis-field/sealed-to-central/v1").derive(shared)
    nonce = os.urandom(12)
    return eph_public + nonce + AESGCM(key).encrypt(nonce, plaintext, aad)


events = []
for seq, (nhs, setting, activity) in enumerate([
    ("9990000018", "ambulance", "B0107"), ("9990000026", "gp", "B0170")], start=1):
    event_id = str(uuid.UUID("0190a1b2-c3d4-7e5f-8a6b-aabbccdd%04x" % seq))
    event = {
        "id": event_id, "device_id": "0190a1b2-c3d4-7e5f-8a6b-aabbccddeeff", "device_seq": seq,
        "device_time": "2026-01-02T03:04:05.678Z", "monotonic_ms": 123456 + seq, "nhs_number": nhs,
        "accessor": {"user_id": "para1", "role": "Paramedic", "activity": activity,
                     "org_ods": "RX9", "org_name": "Synthetic Ambulance Service", "setting": setting},
        "notifies": activity == "B0107" and setting != "gp", "case_reference": "INC-1",
    }
    plain = json.dumps(event, separators=(",", ":")).encode()
    write("event_batch", f"event-{seq}.json", plain)
    aad = f"cpis-field/access-event/v1:{event_id}".encode()
    events.append({"id": event_id, "device_seq": seq, "sealed": b64(seal_to(SEAL_PUBLIC, aad, plain))})
write("event_batch", "batch.json", json.dumps({"events": events}))
tampered = [dict(events[0], device_seq=99), dict(events[1], sealed=b64(b"short"))]
write("event_batch", "batch-bad.json", json.dumps({"events": tampered}))
write("event_batch", "empty.json", '{"events":[]}')
