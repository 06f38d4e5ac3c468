"""The device's FHIR door with the central unreachable: an EPR on the same tablet (here fhirpy)
performs the same two searches against `cpis device fhir-serve` on 127.0.0.1 and is answered from
the device's copy, with the data age and a warning; the unscheduled read is queued as an access and
reaches the LA once the device reconnects. Every response is parsed by fhir.resources."""

import json
import stat

import requests
from fhir.resources.R4B.capabilitystatement import CapabilityStatement
from fhir.resources.R4B.careteam import CareTeam
from fhir.resources.R4B.operationoutcome import OperationOutcome

from conftest import SPINE_SYSTEM
from test_central_facade import audit_events, care_teams, client, entries


def queued(world) -> int:
    return json.loads(world.device("status", "--json"))["queued_events"]


def test_offline_door_answers_both_searches_from_the_devices_copy(world):
    world.stop_central()
    assert queued(world) == 0
    world.start_door()
    try:
        token_file = world.device_dir / "fhir-door.token"
        assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
        assert world.door_base.startswith("http://127.0.0.1:")
        cs = CapabilityStatement.model_validate(requests.get(f"{world.door_base}/metadata", timeout=10).json())
        assert {r.type for r in cs.rest[0].resource} == {"CareTeam", "AuditEvent"}
        assert "signed in on this device" in cs.rest[0].documentation

        # A scheduled read shows the plans and queues nothing.
        scheduled = care_teams(client(world, unscheduled=False, base=world.door_base, token=world.door_token),
                               world.device_child)
        # The unscheduled read is the opening of the alert; the EPR retrying it (same TraceID) is not
        # a second one.
        epr = client(world, trace_id="door-retry-1", base=world.door_base, token=world.door_token)
        bundle = care_teams(epr, world.device_child)
        care_teams(epr, world.device_child)
        for b in (scheduled, bundle):
            assert b.total == 1
            assert b.meta.lastUpdated is not None, "the data age"
            (team,) = [CareTeam.model_validate(e.resource.model_dump()) for e in entries(b, "match")]
            assert team.category[0].coding[0].code == "342191000000101"
            assert team.name == "Northbrook Borough Council"
            assert team.subject.display == "Jo TESTPERSON"
            (outcome,) = entries(b, "outcome")
            warnings = OperationOutcome.model_validate(outcome.resource.model_dump()).issue
            assert all(i.severity == "warning" for i in warnings)
            assert "offline copy" in warnings[0].diagnostics

        history = audit_events(client(world, unscheduled=False, base=world.door_base, token=world.door_token),
                               world.device_child)
        assert history.total == 0
        (outcome,) = entries(history, "outcome")
        texts = [i.diagnostics for i in OperationOutcome.model_validate(outcome.resource.model_dump()).issue]
        assert any("Access history is held by the central" in t for t in texts)

        miss = care_teams(client(world, base=world.door_base, token=world.door_token), world.nobody)
        assert miss.total == 0
        (outcome,) = entries(miss, "outcome")
        texts = " ".join(i.diagnostics for i in OperationOutcome.model_validate(outcome.resource.model_dump()).issue)
        assert "sensitive" in texts, "a miss carries what it could not see"

        r = requests.get(f"{world.door_base}/CareTeam", params={"patient": world.device_child},
                         headers={"Authorization": "Bearer not-the-token", "TraceID": "x"}, timeout=10)
        assert r.status_code == 401
        refusal = OperationOutcome.model_validate(r.json())
        assert refusal.issue[0].details.coding[0].system == SPINE_SYSTEM
        assert refusal.issue[0].details.coding[0].code == "ACCESS_DENIED"
    finally:
        world.stop_door()
    assert queued(world) == 1, "only the unscheduled read was queued, once"


def test_the_queued_access_reaches_the_la_when_the_device_reconnects(world):
    world.start_central()
    before = [n for n in world.notifications() if n["org_ods"] == "RX9"]
    world.device("sync", "--user", "para1")
    after = [n for n in world.notifications() if n["org_ods"] == "RX9"]
    assert len(after) == len(before) + 1
    assert after[-1]["setting"] == "ambulance" and after[-1]["user_id"] == "para1"
    assert queued(world) == 0
