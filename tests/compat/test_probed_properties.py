#!/usr/bin/python3
"""What management probes over QMP must not lose: patched vs unpatched.

    python3 tests/compat/test_probed_properties.py   (no root needed; TAP)

Both builds are started once without a guest (-machine none, qtest accel,
QMP through qemu.machine) and asked the same questions.  Differences are
reported by name.

  test_query_machines     every machine type of the unpatched build is
                          still listed (same name, alias, default flag),
                          with every field it had, of the same JSON type
                          (value changes are printed as notes)
  test_machine_compat_props
                          `query-machines compat-props=true`: every compat
                          property of an unpatched machine type is still
                          there with the same value, and the patched build
                          adds none to a machine type the unpatched build
                          has (a compat property on an existing machine
                          type changes what a guest that does not opt in
                          sees on that machine type)
  test_device_types       every device type of `qom-list-types
                          implements=device abstract=false` is still there
  test_device_properties  for each of those: `device-list-properties` loses
                          no property and changes no property's type (new
                          properties are fine; changed default values are
                          printed as notes)

Binaries: COMPAT_PATCHED_QEMU / COMPAT_UNPATCHED_QEMU (see compatlib.py).
Skips when a binary is missing.
"""

import os
import shutil
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

# pylint: disable=wrong-import-position
import compatlib  # noqa: E402
from compatlib import PATCHED, UNPATCHED, dumps, json_type  # noqa: E402
from serieslib import main, require_qemu_python  # noqa: E402


class ProbedProperties(unittest.TestCase):
    skip_reason = None
    data = {}             # build -> {"machines", "compat", "types", "props"}
    tmpdir = None

    @classmethod
    def setUpClass(cls):
        cls.skip_reason = compatlib.missing_binaries()
        if cls.skip_reason:
            return
        try:
            require_qemu_python()
        except unittest.SkipTest as exc:
            cls.skip_reason = str(exc)
            return
        cls.tmpdir = tempfile.mkdtemp(prefix="compat-probe-")
        cls.data = {}
        for build in (UNPATCHED, PATCHED):
            cls.data[build] = cls._probe(build)

    @classmethod
    def tearDownClass(cls):
        if cls.tmpdir:
            shutil.rmtree(cls.tmpdir, ignore_errors=True)

    @classmethod
    def _probe(cls, build):
        with compatlib.QMPProbe(build, base_dir=cls.tmpdir) as probe:
            machines = probe.cmd("query-machines")
            compat = probe.cmd("query-machines", compat_props=True)
            types = sorted(t["name"] for t in probe.cmd(
                "qom-list-types", implements="device", abstract=False))
            props = {}
            errors = {}
            # The unpatched build's types are the ones that must keep
            # working; ask both builds about those (and only those).
            wanted = types if build == UNPATCHED else \
                cls.data[UNPATCHED]["types"]
            for name in wanted:
                resp = probe.qmp_raw("device-list-properties",
                                     {"typename": name})
                if "error" in resp:
                    errors[name] = resp["error"].get("desc", resp["error"])
                else:
                    props[name] = {p["name"]: p for p in resp["return"]}
        return {"machines": {m["name"]: m for m in machines},
                "compat": {m["name"]: m.get("compat-props", [])
                           for m in compat},
                "types": types, "props": props, "errors": errors}

    def setUp(self):
        if self.skip_reason:
            self.skipTest(self.skip_reason)

    def test_query_machines(self):
        old = self.data[UNPATCHED]["machines"]
        new = self.data[PATCHED]["machines"]
        problems, notes = [], []
        for name, entry in sorted(old.items()):
            if name not in new:
                problems.append(f"machine {name}: missing")
                continue
            for field, value in sorted(entry.items()):
                if field not in new[name]:
                    problems.append(f"machine {name}: field {field} "
                                    "missing")
                elif json_type(value) != json_type(new[name][field]):
                    problems.append(
                        f"machine {name}: field {field} changed type "
                        f"{json_type(value)} -> {json_type(new[name][field])}")
                elif value != new[name][field]:
                    line = (f"machine {name}: field {field} changed value "
                            f"{dumps(value)} -> {dumps(new[name][field])}")
                    # alias and is-default decide what "-M pc"/"-M q35"
                    # and no -M at all mean: those must not move.
                    (problems if field in ("alias", "is-default")
                     else notes).append(line)
            for field in sorted(set(new[name]) - set(entry)):
                if field in ("alias", "is-default"):
                    problems.append(f"machine {name}: gained {field}="
                                    f"{dumps(new[name][field])}")
        for line in notes:
            print(f"note: {line}")
        print(f"{len(old)} machine types compared, "
              f"{len(set(new) - set(old))} new in the patched build")
        self.assertFalse(problems, "\n  " + "\n  ".join(problems))

    def test_machine_compat_props(self):
        old = self.data[UNPATCHED]["compat"]
        new = self.data[PATCHED]["compat"]
        problems = []
        for name in sorted(old):
            if name not in new:
                continue          # reported by test_query_machines
            old_props = {(c["qom-type"], c["property"]): c["value"]
                         for c in old[name]}
            new_props = {(c["qom-type"], c["property"]): c["value"]
                         for c in new[name]}
            for key, value in sorted(old_props.items()):
                if key not in new_props:
                    problems.append(f"{name}: compat property "
                                    f"{key[0]}.{key[1]}={value} dropped")
                elif new_props[key] != value:
                    problems.append(f"{name}: compat property "
                                    f"{key[0]}.{key[1]} changed "
                                    f"{value} -> {new_props[key]}")
            for key in sorted(set(new_props) - set(old_props)):
                problems.append(f"{name}: compat property "
                                f"{key[0]}.{key[1]}={new_props[key]} "
                                "added to an existing machine type")
        self.assertFalse(problems, f"{len(problems)} difference(s):\n  "
                         + "\n  ".join(problems))

    def test_device_types(self):
        old = set(self.data[UNPATCHED]["types"])
        new = set(self.data[PATCHED]["types"])
        print(f"{len(old)} device types in the unpatched build, "
              f"{len(new - old)} new in the patched build: "
              f"{' '.join(sorted(new - old))}")
        self.assertFalse(old - new, "device types missing in the patched "
                         f"build: {' '.join(sorted(old - new))}")

    def test_device_properties(self):
        old = self.data[UNPATCHED]
        new = self.data[PATCHED]
        problems, notes, added = [], [], []
        for name in old["types"]:
            if name in old["errors"]:
                print(f"note: unpatched device-list-properties {name}: "
                      f"{old['errors'][name]}")
                continue
            if name in new["errors"]:
                problems.append(f"{name}: device-list-properties fails: "
                                f"{new['errors'][name]}")
                continue
            if name not in new["props"]:
                continue          # reported by test_device_types
            oprops, nprops = old["props"][name], new["props"][name]
            for prop, info in sorted(oprops.items()):
                if prop not in nprops:
                    problems.append(f"{name}.{prop} ({info['type']}): "
                                    "missing")
                    continue
                if nprops[prop]["type"] != info["type"]:
                    problems.append(f"{name}.{prop}: type "
                                    f"{info['type']} -> "
                                    f"{nprops[prop]['type']}")
                if dumps(info.get("default-value")) != \
                        dumps(nprops[prop].get("default-value")):
                    notes.append(f"{name}.{prop}: default "
                                 f"{dumps(info.get('default-value'))} -> "
                                 f"{dumps(nprops[prop].get('default-value'))}")
            added += [f"{name}.{p}" for p in sorted(set(nprops)
                                                     - set(oprops))]
        for line in notes:
            print(f"note: default value changed: {line}")
        print(f"{len(old['props'])} device types compared; "
              f"{len(added)} properties added: {' '.join(added)}")
        self.assertFalse(problems, f"{len(problems)} difference(s):\n  "
                         + "\n  ".join(problems))


if __name__ == "__main__":
    main()
