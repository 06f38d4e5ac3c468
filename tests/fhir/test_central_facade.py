"""The central's FHIR facade as an existing consumer of the national CP-IS API sees it: fhirpy (an
open-source FHIR client) performs the CareTeam and AuditEvent searches against a running
`cpis central serve`, and every response is parsed by the fhir.resources FHIR models."""

import uuid

import requests
from fhir.resources.R4B.auditevent import AuditEvent
from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.capabilitystatement import CapabilityStatement
from fhir.resources.R4B.careteam import CareTeam
from fhir.resources.R4B.operationoutcome import OperationOutcome
from fhir.resources.R4B.practitionerrole import PractitionerRole
from fhirpy import SyncFHIRClient
from fhirpy.base.searchset import Raw

from conftest import AUDIT_INCLUDE, NHS_SYSTEM, SPINE_SYSTEM

SNOMED = "http://snomed.info/sct"


def client(world, trace_id=None, unscheduled=None, base=None, token=None) -> SyncFHIRClient:
    headers = {"TraceID": trace_id or str(uuid.uuid4())}
    if unscheduled is not None:
        headers["IsUnscheduledAccessEvent"] = "true" if unscheduled else "false"
    return SyncFHIRClient(base or world.base, authorization=f"Bearer {token or world.token}",
                          extra_headers=headers)


def care_teams(fhir: SyncFHIRClient, nhs: str) -> Bundle:
    raw = fhir.resources("CareTeam").search(Raw(**{"patient:identifier": f"{NHS_SYSTEM}|{nhs}"})).fetch_raw()
    return Bundle.model_validate(dict(raw))


def audit_events(fhir: SyncFHIRClient, nhs: str) -> Bundle:
    raw = (fhir.resources("AuditEvent")
           .search(Raw(**{"patient:identifier": f"{NHS_SYSTEM}|{nhs}", "_include": AUDIT_INCLUDE}))
           .fetch_raw())
    return Bundle.model_validate(dict(raw))


def entries(bundle: Bundle, mode: str) -> list:
    return [e for e in (bundle.entry or []) if e.search.mode == mode]


def test_metadata_is_a_capability_statement_of_exactly_the_two_searches(world):
    r = requests.get(f"{world.base}/metadata", timeout=10)
    assert r.status_code == 200
    assert r.headers["Content-Type"] == "application/fhir+json"
    assert "Date" in r.headers
    cs = CapabilityStatement.model_validate(r.json())
    assert cs.fhirVersion == "4.0.1"
    resources = {res.type: res for res in cs.rest[0].resource}
    assert set(resources) == {"CareTeam", "AuditEvent"}
    assert [i.code for i in resources["CareTeam"].interaction] == ["search-type"]
    assert resources["AuditEvent"].searchInclude == [AUDIT_INCLUDE]


def test_care_team_search_gives_one_care_team_per_plan_with_the_las_contacts(world):
    bundle = care_teams(client(world), world.child)
    assert bundle.type == "searchset"
    assert bundle.total == 2
    assert [link.relation for link in bundle.link] == ["self"]
    teams = [CareTeam.model_validate(e.resource.model_dump()) for e in entries(bundle, "match")]
    by_code = {t.category[0].coding[0].code: t for t in teams}
    assert set(by_code) == {"342191000000101", "764841000000100"}
    assert all(t.category[0].coding[0].system == SNOMED for t in teams)
    cp, lac = by_code["342191000000101"], by_code["764841000000100"]
    assert (cp.status, lac.status) == ("active", "inactive")
    assert lac.period.end is not None and cp.period.end is None
    for t in teams:
        assert t.name == "Northbrook Borough Council"
        assert t.subject.identifier.system == NHS_SYSTEM
        assert t.subject.identifier.value == world.child
        assert t.subject.display == "Robin EXAMPLEFAMILY"
        assert {(p.use, p.value) for p in t.telecom} == {("mobile", "0300 555 0101"), ("work", "0300 555 0102")}


def test_an_unborn_child_plan_is_its_own_care_team_on_the_mothers_number(world):
    bundle = care_teams(client(world, unscheduled=False), world.mother)
    (team,) = [CareTeam.model_validate(e.resource.model_dump()) for e in entries(bundle, "match")]
    assert team.category[0].coding[0].code == "818901000000100"
    assert team.subject.identifier.value == world.mother


def test_patient_parameter_alone_is_the_same_search(world):
    raw = client(world, unscheduled=False).resources("CareTeam").search(patient=world.child).fetch_raw()
    assert Bundle.model_validate(dict(raw)).total == 2


def test_no_record_is_an_empty_searchset_not_an_error(world):
    bundle = care_teams(client(world), world.nobody)
    assert bundle.total == 0
    assert not bundle.entry


def test_a_retried_trace_id_notifies_once_and_a_scheduled_read_not_at_all(world):
    before = len(world.notifications())
    retrying = client(world, trace_id="retry-" + str(uuid.uuid4()))
    care_teams(retrying, world.device_child)
    care_teams(retrying, world.device_child)
    after = world.notifications()
    assert len(after) == before + 1
    assert after[-1]["org_ods"] == "RYY" and after[-1]["setting"] == "emergency-department"
    care_teams(client(world, unscheduled=False), world.device_child)
    assert len(world.notifications()) == before + 1


def test_audit_event_search_lists_accesses_with_their_practitioner_roles_included(world):
    care_teams(client(world, trace_id="audit-setup"), world.child)
    bundle = audit_events(client(world, unscheduled=False), world.child)
    matched = entries(bundle, "match")
    included = entries(bundle, "include")
    assert bundle.total == len(matched) >= 1
    assert len(matched) <= 25
    roles = {}
    for e in included:
        role = PractitionerRole.model_validate(e.resource.model_dump())
        roles[f"PractitionerRole/{role.id}"] = role
    for e in matched:
        event = AuditEvent.model_validate(e.resource.model_dump())
        assert event.type.code == "access"
        assert event.type.display == "Access/View Record Lifecycle Event"
        assert event.recorded is not None
        kinds = {a.type.coding[0].code: a for a in event.agent}
        assert set(kinds) == {"PAT", "ASSIGNED"}
        assert kinds["PAT"].who.identifier.value == world.child
        role = roles[kinds["ASSIGNED"].who.reference]
        assert role.organization.display == "Synthetic Urgent Care Trust (RYY)"
        assert role.practitioner.display
        assert role.code[0].text


def test_refusals_are_operation_outcomes_with_spine_codes(world):
    bad_check = world.child[:9] + str((int(world.child[9]) + 1) % 10)
    good = {"patient:identifier": f"{NHS_SYSTEM}|{world.child}"}
    auth = {"Authorization": f"Bearer {world.token}"}
    cases = [
        ({"patient:identifier": f"{NHS_SYSTEM}|{bad_check}"}, {**auth, "TraceID": "e1"}, 400, "INVALID_SEARCH_DATA"),
        (good, auth, 400, "PRECONDITION_FAILED"),
        (good, {**auth, "TraceID": "e2", "IsUnscheduledAccessEvent": "perhaps"}, 400, "PRECONDITION_FAILED"),
        (good, {"TraceID": "e3"}, 401, "ACCESS_DENIED"),
        (good, {"Authorization": "Bearer wrong", "TraceID": "e4"}, 401, "ACCESS_DENIED"),
    ]
    before = len(world.notifications())
    for params, headers, status, code in cases:
        r = requests.get(f"{world.base}/CareTeam", params=params, headers=headers, timeout=10)
        assert r.status_code == status, r.text
        assert r.headers["Content-Type"] == "application/fhir+json"
        assert "Date" in r.headers
        outcome = OperationOutcome.model_validate(r.json())
        coding = outcome.issue[0].details.coding[0]
        assert (coding.system, coding.code) == (SPINE_SYSTEM, code)
        assert outcome.issue[0].diagnostics
        if "TraceID" in headers:
            assert r.headers["TraceID"] == headers["TraceID"]
    assert len(world.notifications()) == before


def test_trace_ids_are_echoed_on_answers(world):
    r = requests.get(f"{world.base}/CareTeam", params={"patient": world.nobody},
                     headers={"Authorization": f"Bearer {world.token}", "X-Request-ID": "req-7"}, timeout=10)
    assert r.status_code == 200
    assert r.headers["X-Request-ID"] == "req-7"
    assert r.headers["Content-Type"] == "application/fhir+json"
    Bundle.model_validate(r.json())
