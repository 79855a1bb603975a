#!/usr/bin/python3
"""Run a systemd service's ExecStart the way systemd would, without systemd as PID 1.

    run-unit.py /lib/systemd/system/ctedge.service        # runs it in the foreground
    run-unit.py --show /lib/systemd/system/ctedge.service  # prints what it would run

Reads the unit file and applies: User=, Group=, WorkingDirectory=, Environment=,
EnvironmentFile= (later files and lines win), UMask=, LogsDirectory=/StateDirectory=/
RuntimeDirectory= (created and owned like systemd does), and, as root, an
approximation of the sandbox in a private mount namespace: ProtectSystem=strict
(the root file system read-only except those directories and ReadWritePaths=),
PrivateTmp=, ProtectHome=, NoNewPrivileges= and an empty CapabilityBoundingSet=.
Seccomp filters, PrivateUsers=, PrivateDevices= and the Protect*Kernel* options are
not emulated. The process keeps this script's PID (exec), so SIGTERM to that PID is
what systemd's KillSignal= would deliver.

Only the standard library; meant for Debian's /usr/bin/python3.
"""

from __future__ import annotations

import ctypes
import grp
import os
import pwd
import shlex
import subprocess
import sys

SYSTEMD_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
CLONE_NEWNS = 0x00020000
PR_SET_NO_NEW_PRIVS = 38
PR_CAPBSET_DROP = 24


class UnitError(Exception):
    pass


def parse_unit(path: str) -> dict[str, dict[str, list[str]]]:
    """Sections of a unit file as {section: {key: [values in order]}}."""
    sections: dict[str, dict[str, list[str]]] = {}
    current = None
    pending = ""
    with open(path, encoding="utf-8") as f:
        lines = f.read().splitlines()
    for raw in lines:
        line = pending + raw.strip() if pending else raw.strip()
        pending = ""
        if line.endswith("\\"):
            pending = line[:-1] + " "
            continue
        if not line or line[0] in "#;":
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], {})
            continue
        if current is None or "=" not in line:
            raise UnitError(f"{path}: cannot parse line {raw!r}")
        key, value = line.split("=", 1)
        current.setdefault(key.strip(), []).append(value.strip())
    return sections


def last(service: dict[str, list[str]], key: str, default: str | None = None) -> str | None:
    values = service.get(key)
    return values[-1] if values else default


def words(service: dict[str, list[str]], key: str) -> list[str]:
    """A list-valued setting: words accumulate, an empty assignment resets."""
    out: list[str] = []
    for value in service.get(key, []):
        if not value:
            out = []
        else:
            out.extend(value.split())
    return out


def truthy(value: str | None) -> bool:
    return (value or "").lower() in ("1", "yes", "true", "on")


def parse_env_file(path: str) -> dict[str, str]:
    """A systemd EnvironmentFile: NAME=value lines, # and ; comments, optional quotes."""
    env: dict[str, str] = {}
    with open(path, encoding="utf-8") as f:
        text = f.read().replace("\\\n", "")
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line[0] in "#;":
            continue
        if "=" not in line:
            raise UnitError(f"{path}: not NAME=value: {raw!r}")
        key, value = line.split("=", 1)
        key, value = key.strip(), value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
            value = value[1:-1]
            if raw.strip().split("=", 1)[1].strip()[0] == '"':
                value = value.replace('\\"', '"').replace("\\\\", "\\")
        env[key] = value
    return env


def build_plan(unit_path: str) -> dict:
    """Everything needed to start the unit's main process."""
    service = parse_unit(unit_path).get("Service")
    if service is None:
        raise UnitError(f"{unit_path}: no [Service] section")
    exec_start = last(service, "ExecStart")
    if not exec_start:
        raise UnitError(f"{unit_path}: no ExecStart=")
    exec_start = exec_start.lstrip("@-:+!")
    if "$" in exec_start or "%" in exec_start:
        raise UnitError("variables and specifiers in ExecStart= are not emulated")
    argv = shlex.split(exec_start)
    user = last(service, "User", "root")
    pw = pwd.getpwnam(user)
    group = last(service, "Group")
    gid = grp.getgrnam(group).gr_gid if group else pw.pw_gid
    env = {"PATH": SYSTEMD_PATH, "HOME": pw.pw_dir, "USER": user, "LOGNAME": user,
           "SHELL": pw.pw_shell}
    for value in service.get("Environment", []):
        for assignment in shlex.split(value):
            key, _, val = assignment.partition("=")
            env[key] = val
    for value in service.get("EnvironmentFile", []):
        optional = value.startswith("-")
        path = value.lstrip("-")
        if optional and not os.path.exists(path):
            continue
        env.update(parse_env_file(path))
    directories = []
    for kind, base in (("Logs", "/var/log"), ("State", "/var/lib"), ("Runtime", "/run"),
                       ("Cache", "/var/cache")):
        mode = int(last(service, f"{kind}DirectoryMode", "0755"), 8)
        for name in words(service, f"{kind}Directory"):
            directories.append((os.path.join(base, name), mode))
    read_write = [p.lstrip("-") for p in words(service, "ReadWritePaths")]
    return {
        "argv": argv, "uid": pw.pw_uid, "gid": gid, "user": user, "env": env,
        "cwd": last(service, "WorkingDirectory", pw.pw_dir if user != "root" else "/"),
        "umask": int(last(service, "UMask", "0022"), 8),
        "directories": directories,
        "read_write": read_write,
        "protect_system": last(service, "ProtectSystem", "no"),
        "protect_home": last(service, "ProtectHome", "no"),
        "private_tmp": truthy(last(service, "PrivateTmp")),
        "no_new_privileges": truthy(last(service, "NoNewPrivileges")),
        "capability_bounding": service.get("CapabilityBoundingSet"),
        "timeout_stop": last(service, "TimeoutStopSec", "90"),
        "kill_signal": last(service, "KillSignal", "SIGTERM"),
    }


def _mount(*args: str) -> None:
    subprocess.run(["mount", *args], check=True)


def enter_sandbox(plan: dict) -> None:
    """Private mount namespace with the unit's file system protections (as root)."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.unshare(CLONE_NEWNS) != 0:
        raise OSError(ctypes.get_errno(), "unshare(CLONE_NEWNS)")
    _mount("--make-rprivate", "/")
    writable = [d for d, _ in plan["directories"]] + plan["read_write"]
    for path in writable:
        if os.path.isdir(path):
            _mount("--bind", path, path)
    if plan["private_tmp"]:
        for path in ("/tmp", "/var/tmp"):
            _mount("-t", "tmpfs", "-o", "mode=1777,nosuid,nodev", "tmpfs", path)
    if plan["protect_home"] in ("yes", "true", "read-only", "tmpfs"):
        for path in ("/home", "/root", "/run/user"):
            if os.path.isdir(path):
                _mount("-t", "tmpfs", "-o", "mode=0755,ro,nosuid,nodev", "tmpfs", path)
    if plan["protect_system"] == "strict":
        _mount("-o", "remount,bind,ro", "/")
    elif plan["protect_system"] in ("yes", "true", "full"):
        for path in ("/usr", "/boot", "/efi") + (("/etc",) if plan["protect_system"] == "full" else ()):
            if os.path.isdir(path):
                _mount("--bind", path, path)
                _mount("-o", "remount,bind,ro", path)


def drop_privileges(plan: dict) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    bounding = plan["capability_bounding"]
    if bounding is not None and not any(v for v in bounding):
        last_cap = int(open("/proc/sys/kernel/cap_last_cap").read())
        for cap in range(last_cap + 1):
            libc.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0)
    os.setgroups([plan["gid"]])
    os.setgid(plan["gid"])
    os.setuid(plan["uid"])
    if plan["no_new_privileges"]:
        if libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "PR_SET_NO_NEW_PRIVS")


def make_directories(plan: dict) -> None:
    for path, mode in plan["directories"]:
        os.makedirs(path, exist_ok=True)
        os.chown(path, plan["uid"], plan["gid"])
        os.chmod(path, mode)


def main(argv: list[str]) -> int:
    show = "--show" in argv
    args = [a for a in argv if a != "--show"]
    if len(args) != 1:
        print(__doc__, file=sys.stderr)
        return 2
    plan = build_plan(args[0])
    if show:
        for key, value in plan.items():
            print(f"{key}: {value}")
        return 0
    if os.geteuid() == 0:
        make_directories(plan)
        enter_sandbox(plan)
    os.chdir(plan["cwd"])
    if os.geteuid() == 0:
        drop_privileges(plan)
    os.umask(plan["umask"])
    sys.stdout.flush()
    os.execve(plan["argv"][0], plan["argv"], plan["env"])
    return 127


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1:]))
    except (UnitError, OSError, KeyError, subprocess.CalledProcessError) as e:
        print(f"run-unit: {e}", file=sys.stderr)
        sys.exit(1)
