"""The FHIR facade checked by independent FHIR software: a real `cpis central serve` process over real
HTTP (a SQLite file in a temporary directory), a device enrolled in it that later serves its FHIR door
offline, and helpers to run the `cpis` command. Synthetic people, NHS numbers from the 999 test range.
"""

import datetime
import json
import os
import signal
import socket
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CPIS = os.environ.get("CPIS_BIN", str(ROOT / "target" / "debug" / "cpis"))
NHS_SYSTEM = "https://fhir.nhs.uk/Id/nhs-number"
SPINE_SYSTEM = "https://fhir.nhs.uk/CodeSystem/England-SpineErrorOrWarningCode"
AUDIT_INCLUDE = "AuditEvent:entity-type=http://terminology.hl7.org/CodeSystem/v3-RoleClass|ASSIGNED"
PIN = "2468"


def nhs_of(n: int) -> str:
    """The n-th valid NHS number of the 999 test range (Modulus 11)."""
    while True:
        first_nine = f"999{n:06d}"
        total = sum(int(d) * (10 - i) for i, d in enumerate(first_nine))
        check = 11 - total % 11
        if check == 11:
            check = 0
        if check != 10:
            return first_nine + str(check)
        n += 1


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class World:
    """One central, one LA with a few people, one FHIR client system, one enrolled device."""

    def __init__(self, tmp: Path):
        self.tmp = tmp
        self.db = f"sqlite:{tmp / 'central.sqlite'}"
        self.port = free_port()
        self.central_url = f"http://127.0.0.1:{self.port}"
        self.base = f"{self.central_url}/fhir/R4"
        self.central_proc = None
        self.device_dir = tmp / "device"
        self.door_proc = None
        self.door_base = None
        today = datetime.date.today()
        # Two plans for one child (one ended a month ago, still shown), an unborn child plan on a
        # pregnant woman's number, a child for the device's checks, and a number with no record.
        self.child = nhs_of(101)
        self.mother = nhs_of(202)
        self.device_child = nhs_of(303)
        self.nobody = nhs_of(404)
        ended = today - datetime.timedelta(days=30)
        due = today + datetime.timedelta(days=60)
        rows = [
            f"{self.child},Examplefamily,Robin,2019-02-03,CPPI,2025-01-10,,,,",
            f"{self.child},Examplefamily,Robin,2019-02-03,LACI,2024-06-01,{ended},,,",
            f"{self.mother},Samplename,Alex,1998-07-08,UCPI,2025-03-01,,{due},,",
            f"{self.device_child},Testperson,Jo,2020-05-06,CPPI,2025-02-01,,,,",
        ]
        header = "nhs_number,family_name,given_names,date_of_birth,plan_kind,start_date,end_date,due_date,local_id,delete_date"
        (tmp / "upload.csv").write_text(header + "\n" + "\n".join(rows) + "\n")

    def cpis(self, *args, env=None, check=True) -> str:
        full_env = {**os.environ, "CPIS_PIN": PIN, **(env or {})}
        r = subprocess.run([CPIS, *args], capture_output=True, text=True, env=full_env, timeout=120)
        if check and r.returncode != 0:
            raise AssertionError(f"cpis {' '.join(args[:3])}... failed ({r.returncode}): {r.stderr}")
        return r.stdout

    def central(self, *args, **kw) -> str:
        return self.cpis("central", "--db", self.db, *args, **kw)

    def device(self, *args, **kw) -> str:
        return self.cpis("device", "--data-dir", str(self.device_dir), *args, **kw)

    def setup(self):
        self.central("la", "--ods", "L001", "--name", "Northbrook Borough Council",
                     "--emergency-phone", "0300 555 0101", "--office-phone", "0300 555 0102",
                     "--region", "north-west")
        self.central("import", "--la", "L001", str(self.tmp / "upload.csv"))
        self.central("user", "--id", "para1", "--name", "Sam Example", "--org", "RX9",
                     "--activity", "B0107", "--role", "Paramedic")
        added = json.loads(self.central("fhir-client", "add", "--org", "RYY", "--org-name",
                                        "Synthetic Urgent Care Trust", "--setting",
                                        "emergency-department", "--json"))
        self.token = added["token"]
        self.client_id = added["client_id"]
        self.start_central()
        code = self.central("enrol", "--region", "north-west", "--org", "RX9", "--setting",
                            "ambulance", "--org-name", "Synthetic Ambulance Service").strip().splitlines()[-1]
        self.device("enrol", "--central", self.central_url, "--code", code)
        self.device("sync", "--user", "para1")

    def start_central(self):
        self.central_proc = subprocess.Popen(
            [CPIS, "central", "--db", self.db, "serve", "--listen", f"127.0.0.1:{self.port}"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(f"{self.central_url}/v1/status", timeout=2).read()
                return
            except OSError:
                if time.monotonic() > deadline or self.central_proc.poll() is not None:
                    raise AssertionError("the central did not start")
                time.sleep(0.1)

    def stop_central(self):
        if self.central_proc:
            self.central_proc.send_signal(signal.SIGINT)
            self.central_proc.wait(timeout=30)
            self.central_proc = None

    def start_door(self):
        self.door_proc = subprocess.Popen(
            [CPIS, "device", "--data-dir", str(self.device_dir), "fhir-serve", "--user", "para1",
             "--port", "0"],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
            env={**os.environ, "CPIS_PIN": PIN})
        line = self.door_proc.stdout.readline()
        assert "FHIR door serving at " in line, line
        self.door_base = line.split("FHIR door serving at ")[1].split()[0]
        self.door_token = (self.device_dir / "fhir-door.token").read_text().strip()

    def stop_door(self):
        if self.door_proc:
            self.door_proc.send_signal(signal.SIGTERM)
            self.door_proc.wait(timeout=30)
            self.door_proc = None

    def notifications(self) -> list:
        return json.loads(self.central("notifications", "--la", "L001", "--json"))["notifications"]

    def close(self):
        self.stop_door()
        self.stop_central()


@pytest.fixture(scope="session")
def world():
    with tempfile.TemporaryDirectory() as tmp:
        w = World(Path(tmp))
        try:
            w.setup()
            yield w
        finally:
            w.close()
