"""``workbench doctor``: is this machine ready for the Hailo stages, and if not, what to fix.

One line per check with a verdict (ok / warn / FAIL / info): Python, numpy, torch, ONNX Runtime,
whether ``hailo_sdk_client`` (DFC) and ``hailo_platform`` (HailoRT) import and their versions, the
HailoRT kernel driver against the library (they must be the same version: HailoRT's
``hailort_driver.cpp`` refuses a different one with HAILO_INVALID_DRIVER_VERSION), the DFC <-> HailoRT
pairing of a run's HEF (``versions.VERSION_PAIRS``), whether a device answers
``hailortcli fw-control identify`` and whether its architecture runs the HEF's ``hw_arch``. Nothing
here changes the machine; the last block lists the fixes.
"""

from __future__ import annotations

import json
import platform
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any, Callable, Optional

from workbench.hailo.versions import dfc_for_hailort, major_minor, pairing_verdict, pairs_text

OK, WARN, FAIL, INFO = "ok", "warn", "FAIL", "info"
DRIVER_VERSION_FILE = Path("/sys/module/hailo_pci/version")  # MODULE_VERSION of the hailo_pci driver
# Which HEF hw_arch a device architecture (hailortcli identify) runs (REFERENCE.md §2: a hailo8l HEF runs
# on a Hailo-8, a hailo8 HEF does not run on a Hailo-8L).
RUNS_ON = {"HAILO8": {"hailo8", "hailo8l"}, "HAILO8L": {"hailo8l"}}
PI_FIX = (
    "on the Raspberry Pi: sudo apt install dkms hailo-all && sudo reboot, then `make install-pi` "
    "(a venv with --system-site-packages, so the system's hailo_platform stays visible)"
)
DFC_FIX = (
    "on the x86_64 DFC machine: install the DFC wheel from the Hailo Developer Zone into a Python "
    "3.10 environment, activate it, then `make install-dfc`"
)


@dataclass
class Check:
    """One line of the report."""

    name: str
    verdict: str
    detail: str
    fix: str = ""


def _version(dist_names: tuple[str, ...], module: Any = None) -> Optional[str]:
    for dist in dist_names:
        try:
            return metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
    return getattr(module, "__version__", None) if module is not None else None


def _import(name: str) -> tuple[Any, Optional[str]]:
    """(module, None) or (None, why it does not import)."""
    import importlib

    try:
        return importlib.import_module(name), None
    except ImportError as exc:
        return None, f"not installed ({exc})"
    except Exception as exc:  # a broken install (missing .so, wrong numpy) is a reason, not a crash
        return None, f"fails to import: {type(exc).__name__}: {exc}"


def _venv_hides_system_site() -> bool:
    """True inside a venv made without --system-site-packages (it cannot see apt's hailo_platform)."""
    if sys.prefix == getattr(sys, "base_prefix", sys.prefix):
        return False
    cfg = Path(sys.prefix) / "pyvenv.cfg"
    try:
        text = cfg.read_text()
    except OSError:
        return False
    m = re.search(r"include-system-site-packages\s*=\s*(\w+)", text)
    return bool(m and m.group(1).lower() == "false")


# ---- the Python side ------------------------------------------------------------------------------
def check_python() -> list[Check]:
    out = []
    ver = platform.python_version()
    out.append(
        Check(
            "Python",
            OK,
            f"{ver} ({sys.executable}, {platform.machine()})",
            ""
            if sys.version_info[:2] <= (3, 11)
            else "the Hailo machines run Python 3.11 (Pi) and 3.10 (DFC); pins are checked there",
        )
    )
    np_mod, why = _import("numpy")
    if np_mod is None:
        out.append(Check("numpy", FAIL, why or "", "install a profile: make install-pi / make install-dfc"))
    else:
        major = int(np_mod.__version__.split(".")[0])
        hailo_present = any(_spec(n) for n in ("hailo_platform", "hailo_sdk_client"))
        if major >= 2 and hailo_present:
            out.append(
                Check(
                    "numpy",
                    FAIL,
                    f"{np_mod.__version__}: HailoRT 4.20-4.23 and the DFC need numpy<2",
                    "make install-pi (Pi) or make install-dfc (DFC machine): both pin numpy<2",
                )
            )
        elif major >= 2:
            out.append(
                Check(
                    "numpy", INFO, f"{np_mod.__version__} (fine without Hailo packages; the Hailo profiles use numpy<2)"
                )
            )
        else:
            out.append(Check("numpy", OK, f"{np_mod.__version__} (<2, as HailoRT and the DFC need)"))
    torch_v = _version(("torch",)) if _spec("torch") else None
    out.append(
        Check(
            "torch",
            OK if torch_v else INFO,
            f"{torch_v} (stages 01-02)"
            if torch_v
            else "not installed: stages 06-08 run without it; stages 01-02 (training, export) need it",
        )
    )
    ort, why = _import("onnxruntime")
    out.append(
        Check("ONNX Runtime", OK, f"{ort.__version__}")
        if ort is not None
        else Check(
            "ONNX Runtime",
            FAIL,
            why or "",
            "stage 07 needs it: install a profile (make install-pi / make install-dfc) or `make .venv/.installed`",
        )
    )
    return out


def _spec(name: str) -> bool:
    import importlib.util

    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


# ---- the Hailo packages ---------------------------------------------------------------------------
def check_hailo_packages() -> tuple[list[Check], Optional[str], Optional[str]]:
    """Checks, DFC version, HailoRT version (None where not installed)."""
    out = []
    dfc, why_dfc = _import("hailo_sdk_client")
    dfc_v = _version(("hailo-dataflow-compiler", "hailo_dataflow_compiler"), dfc) if dfc is not None else None
    if dfc is not None:
        hint = "" if sys.version_info[:2] <= (3, 10) else "the DFC wheels support Python 3.8-3.10"
        out.append(Check("hailo_sdk_client (DFC)", OK if not hint else WARN, f"{dfc_v}", hint))
    else:
        out.append(
            Check(
                "hailo_sdk_client (DFC)",
                INFO,
                f"{why_dfc}: stage 06 writes the compile bundle instead",
                f"to compile here: {DFC_FIX} (x86_64 Linux only)",
            )
        )
    hp, why_hp = _import("hailo_platform")
    rt_v = _version(("hailort",), hp) if hp is not None else None
    if hp is not None:
        out.append(Check("hailo_platform (HailoRT)", OK, f"{rt_v}"))
    else:
        fix = PI_FIX
        if _venv_hides_system_site():
            fix = (
                PI_FIX + "; this venv was made without --system-site-packages, so it would not see an "
                "apt-installed hailo_platform either"
            )
        out.append(Check("hailo_platform (HailoRT)", INFO, f"{why_hp}: stage 07 runs the CPU backends only", fix))
    return out, dfc_v, rt_v


def check_hailortcli(run_cmd: Callable[..., Any] = subprocess.run) -> tuple[list[Check], Optional[str]]:
    exe = shutil.which("hailortcli")
    if not exe:
        return [Check("hailortcli", INFO, "not on PATH", "it comes with HailoRT (hailo-all on the Pi)")], None
    try:
        proc = run_cmd([exe, "--version"], capture_output=True, text=True, timeout=20)
        text = (proc.stdout + proc.stderr).strip()
    except (OSError, subprocess.SubprocessError) as exc:
        return [Check("hailortcli", FAIL, f"--version failed: {exc}", "reinstall HailoRT")], None
    line = text.splitlines()[-1] if text else "?"
    if proc.returncode != 0:
        return [Check("hailortcli", FAIL, f"--version exited {proc.returncode}: {line}", "reinstall HailoRT")], None
    return [Check("hailortcli", OK, line)], line


def check_driver(hailort_version: Optional[str], driver_file: Path = DRIVER_VERSION_FILE) -> list[Check]:
    """The hailo_pci kernel driver must be the same version as the HailoRT library."""
    if not driver_file.is_file():
        if hailort_version is None:
            return []
        return [
            Check(
                "HailoRT PCIe driver",
                WARN,
                f"{driver_file} not found: the hailo_pci driver is not loaded",
                "sudo apt install dkms hailo-all (hailo-dkms builds the driver for the running kernel), "
                "reboot; `lsmod | grep hailo` must list hailo_pci",
            )
        ]
    drv = driver_file.read_text().strip()
    if hailort_version is None:
        return [Check("HailoRT PCIe driver", INFO, f"hailo_pci {drv} loaded; HailoRT library not found here")]
    if _triple(drv) == _triple(hailort_version):
        return [Check("HailoRT PCIe driver", OK, f"hailo_pci {drv} = HailoRT {hailort_version}")]
    return [
        Check(
            "HailoRT PCIe driver",
            FAIL,
            f"hailo_pci {drv} != HailoRT {hailort_version}: HailoRT refuses a "
            f"different driver (HAILO_INVALID_DRIVER_VERSION)",
            "install one version of hailort, hailo-dkms and python3-hailort "
            "(sudo apt install --reinstall hailo-all, with dkms), reboot",
        )
    ]


def _triple(v: str) -> Optional[str]:
    m = re.search(r"(\d+)\.(\d+)\.(\d+)", v)
    return ".".join(m.groups()) if m else major_minor(v)


# ---- the run's HEF and the device -----------------------------------------------------------------
@dataclass
class HefFacts:
    hef: Optional[Path]
    dfc_version: Optional[str]  # the DFC that built it, when the run recorded it
    hw_arch: Optional[str]  # what it was compiled for
    source: str  # where the facts come from


def hef_facts(run: Any = None, hef: Optional[Path] = None) -> Optional[HefFacts]:
    """What a run (``workbench.runs.Run``, duck-typed) or a HEF path says about the HEF."""
    if run is None and hef is None:
        return None
    dfc_v = arch = None
    sources = []
    if run is not None:
        compile_result = run.artifact("compile_result", must_exist=False)
        if compile_result.is_file():
            d = json.loads(compile_result.read_text())
            dfc_v, arch = d.get("dfc_version"), d.get("hw_arch")
            sources.append(compile_result.name)
        if arch is None:
            arch = (run.params() or {}).get("hw_arch")
            if arch:
                sources.append("params.yaml hw_arch (what compile.sh was written for)")
        if hef is None:
            own = run.artifact("hef", must_exist=False)
            hef = own if own.is_file() else None
    return HefFacts(
        hef=Path(hef) if hef else None,
        dfc_version=dfc_v,
        hw_arch=arch,
        source=", ".join(sources) or "the HEF path only",
    )


def check_pairing(facts: Optional[HefFacts], hailort_version: Optional[str]) -> list[Check]:
    if facts is None:
        return [Check("DFC <-> HailoRT", INFO, f"no run or HEF given (--run / --hef); pairs: {pairs_text()}")]
    if facts.hef is None and facts.dfc_version is None:
        want = dfc_for_hailort(hailort_version)
        hint = (
            f"compile it with DFC {want}.x to match HailoRT {hailort_version} here"
            if want
            else f"compile it with the DFC that pairs with the device's HailoRT ({pairs_text()})"
        )
        return [Check("DFC <-> HailoRT", INFO, f"no HEF in this run yet (stage 06 wrote the bundle): {hint}")]
    where = f"HEF {facts.hef}" if facts.hef else "no HEF in this run yet"
    ok, why = pairing_verdict(facts.dfc_version, hailort_version)
    if ok is None:
        fix = ""
        if facts.dfc_version is None:
            fix = (
                f"the run does not record which DFC built the HEF (imported or compiled elsewhere): check "
                f"`hailo --version` on the compile machine against {pairs_text()}"
            )
        return [Check("DFC <-> HailoRT", WARN, f"{where}: {why}", fix)]
    return [
        Check(
            "DFC <-> HailoRT",
            OK if ok else FAIL,
            f"{where}: {why}",
            "" if ok else "HEF and runtime must come from a listed pair (README 'Versions that go together')",
        )
    ]


def parse_identify(text: str) -> dict[str, str]:
    """``hailortcli fw-control identify`` lines ('Key: value') -> dict (fw_control_command.cpp)."""
    out = {}
    for line in text.splitlines():
        if ":" in line:
            k, v = line.split(":", 1)
            if k.strip() and v.strip():
                out[k.strip()] = v.strip()
    return out


def check_device(facts: Optional[HefFacts], run_cmd: Callable[..., Any] = subprocess.run) -> list[Check]:
    exe = shutil.which("hailortcli")
    if not exe:
        return [Check("device", INFO, "not checked: hailortcli is not on PATH")]
    try:
        proc = run_cmd([exe, "fw-control", "identify"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError) as exc:
        return [
            Check(
                "device", FAIL, f"hailortcli fw-control identify failed: {exc}", "hailortcli scan; dmesg | grep hailo"
            )
        ]
    text = (proc.stdout or "") + (proc.stderr or "")
    if proc.returncode != 0:
        fix = "hailortcli scan must list the device; check the PCIe connection and `dmesg | grep hailo`"
        if "OUT_OF_PHYSICAL_DEVICES" in text:
            fix = "another process holds the device: stop it (or use HailoRT's multi-process service)"
        elif "different from library version" in text or "INVALID_DRIVER_VERSION" in text:
            fix = "driver and HailoRT differ: sudo apt install --reinstall hailo-all (with dkms), reboot"
        return [
            Check(
                "device",
                FAIL,
                f"hailortcli fw-control identify exited {proc.returncode}: "
                f"{text.strip().splitlines()[-1] if text.strip() else ''}",
                fix,
            )
        ]
    ident = parse_identify(text)
    arch = ident.get("Device Architecture", "unknown")
    out = [
        Check(
            "device",
            OK,
            f"answers: {ident.get('Board Name', '?')}, architecture {arch}, firmware "
            f"{ident.get('Firmware Version', '?')}",
        )
    ]
    if facts is not None and facts.hw_arch:
        runs = RUNS_ON.get(arch.upper())
        if runs is None:
            out.append(
                Check(
                    "HEF hw_arch vs device",
                    WARN,
                    f"HEF for {facts.hw_arch}, device {arch}: not in the known table {RUNS_ON}",
                )
            )
        elif facts.hw_arch in runs:
            out.append(Check("HEF hw_arch vs device", OK, f"HEF for {facts.hw_arch} runs on {arch} ({facts.source})"))
        else:
            out.append(
                Check(
                    "HEF hw_arch vs device",
                    FAIL,
                    f"HEF for {facts.hw_arch} does not run on {arch} ({facts.source})",
                    f"recompile with hw_arch: {sorted(runs)[0]} (stage 06 / compile.sh --hw-arch)",
                )
            )
    return out


# ---- report -------------------------------------------------------------------------------------
def run_checks(run: Any = None, hef: Optional[Path] = None, device: bool = True) -> list[Check]:
    checks = check_python()
    pkgs, _dfc_here, rt_v = check_hailo_packages()
    checks += pkgs
    cli_checks, cli_v = check_hailortcli()
    checks += cli_checks
    rt_any = rt_v or cli_v
    checks += check_driver(rt_any)
    facts = hef_facts(run, hef)
    checks += check_pairing(facts, rt_any)
    if device:
        checks += check_device(facts)
    return checks


def format_report(checks: list[Check]) -> str:
    width = max(len(c.name) for c in checks)
    lines = [f"[{c.verdict:>4}] {c.name:<{width}}  {c.detail}" for c in checks]
    fixes = [f"- {c.name}: {c.fix}" for c in checks if c.fix and c.verdict in (FAIL, WARN, INFO)]
    installed = [c for c in checks if c.name.startswith("hailo_") and c.verdict in (OK, WARN)]
    summary = []
    if not installed:
        summary.append(
            "Neither Hailo package is installed here: stage 06 writes the compile bundle and stage 07 "
            "evaluates the CPU backends only."
        )
    lines += [""] + summary + (["What to fix / do next:"] + fixes if fixes else ["Nothing to fix."])
    return "\n".join(lines)


def doctor(run: Any = None, hef: Optional[Path] = None, device: bool = True, out: Callable[[str], Any] = print) -> int:
    """Print the report; exit status 1 when a check FAILed, else 0."""
    checks = run_checks(run, hef, device)
    out(format_report(checks))
    return 1 if any(c.verdict == FAIL for c in checks) else 0
