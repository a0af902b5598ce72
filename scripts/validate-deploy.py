#!/usr/bin/env python3
"""Validate deploy/ without a Docker engine or a cluster (python3 + PyYAML only).

    python3 scripts/validate-deploy.py                      # static checks
    python3 scripts/validate-deploy.py --metrics-url http://127.0.0.1:3838/metrics,http://127.0.0.1:3010/metrics

Static checks: every YAML/JSON file under deploy/ parses; the compose files (services, the
published ports the stack promises, build contexts/Dockerfiles/targets, bind-mounted files,
named volumes, depends_on targets and their healthchecks, required ${VAR:?} variables listed in
deploy/.env.example); the Dockerfile (COPY sources exist and are not dockerignored, every
workspace member's manifest is in the dependency layer, every file the compiler embeds
(include_str!, sqlx::migrate!) is copied before the build, the packages and binaries it builds
and copies exist in the workspace, --locked --release, non-root USER, HEALTHCHECK, EXPOSE);
nginx.conf (WebSocket upgrade headers, read timeout above the server's ping interval, balancing
method, upstream hosts are compose services); Prometheus (scrape targets are compose services
on ports they listen on, rule files exist, every alert has severity and summary, the required
alerts exist; promtool check when promtool is on PATH); Grafana (datasource uid and dashboard
path resolve through the compose mounts, panel ids, the required panels exist); Kubernetes
(probes on /health/live and /health/ready, selectors, HPA target, PDB, Secret, non-root,
termination grace above the shutdown grace).

Metric names: every `nebula_*` name in the dashboard and alert expressions (histogram
`_bucket`/`_sum`/`_count` reduced to the base name) is looked up in the crates' sources (a
warning when absent) and, with --metrics-url, on the live /metrics of the given processes
(an error when absent, unless listed in --allow-missing).

Exit status: 0 when everything passed, 1 when a check failed, 2 on bad usage.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import urllib.error
import urllib.parse
import urllib.request

try:
    import yaml
except ImportError:  # pragma: no cover - the environment promises PyYAML
    sys.exit("validate-deploy: PyYAML is required (pip install pyyaml)")

try:
    import tomllib  # Python >= 3.11
except ImportError:  # pragma: no cover
    tomllib = None

# What the stack promises (deploy/README.md): service -> host ports it publishes.
EXPECTED_PORTS = {
    "docker-compose.yml": {
        "lb": [3838],
        "notifier": [3010],
        "postgres": [5432],
        "redis": [6379],
        "rabbitmq": [5672, 15672],
        "prometheus": [9090],
        "grafana": [3050],
    },
    "docker-compose.test.yml": {
        "postgres": [5432],
        "redis": [6379],
        "rabbitmq": [5672],
    },
}
# The replicated chat server in the full stack and how many replicas it must have at least.
REPLICATED_SERVICE = ("docker-compose.yml", "backend", 2)

# Alerts the runbook relies on: description -> pattern that some alert expression must match.
REQUIRED_ALERTS = {
    "high HTTP 5xx error rate": r"nebula_http_requests_total\{[^}]*status=~\"5",
    "high p99 HTTP latency": r"histogram_quantile\(\s*0\.99[^;]*nebula_http_request_duration_seconds_bucket",
    "high p99 message end-to-end latency": r"histogram_quantile\(\s*0\.99[^;]*nebula_message_delivery_latency_seconds_bucket",
    "slow-consumer disconnect spike": r"nebula_ws_slow_consumer_disconnects_total",
    "outbox backlog growing": r"nebula_outbox_backlog",
    "bus down": r"nebula_bus_connected",
    "broker down": r"nebula_broker_connected",
    "database down": r"route=~\"/health",
    "target down": r"\bup\{",
}

# Panels the dashboard must have: description -> pattern over all of one panel's expressions.
REQUIRED_PANELS = {
    "HTTP RPS": r"rate\(nebula_http_requests_total",
    "HTTP error rate": r"nebula_http_requests_total\{[^}]*status=~\"5",
    "HTTP latency percentiles": r"(?s)histogram_quantile\(0\.5,.*histogram_quantile\(0\.9,.*histogram_quantile\(0\.99,.*nebula_http_request_duration_seconds_bucket",
    "WebSocket connections and subscriptions": r"(?s)nebula_ws_connections.*nebula_ws_subscriptions",
    "deliveries/s by event type": r"sum by \(type\) \(rate\(nebula_ws_events_delivered_total",
    "message end-to-end latency percentiles": r"(?s)histogram_quantile\(0\.5,.*histogram_quantile\(0\.99,.*nebula_message_delivery_latency_seconds_bucket",
    "commit batch size": r"nebula_commit_batch_size",
    "commit latency": r"nebula_commit_duration_seconds_bucket",
    "DB pool in use/idle": r"nebula_db_pool_connections",
    "outbound overflows and slow-consumer disconnects": r"(?s)nebula_ws_outbound_overflows_total.*nebula_ws_slow_consumer_disconnects_total",
    "rate-limit rejections": r"nebula_rate_limited_total",
    "outbox backlog": r"nebula_outbox_backlog",
    "outbox published/s": r"rate\(nebula_outbox_published_total",
    "bus/broker connection state": r"(?s)nebula_bus_connected.*nebula_broker_connected",
    "notifier pushes sent/failed": r"(?s)nebula_notifier_pushes_sent_total.*nebula_notifier_pushes_failed_total",
    "dead-lettered": r"nebula_notifier_events_dead_lettered_total",
}

METRIC_RE = re.compile(r"(?<![A-Za-z0-9_:])nebula_[a-z0-9_]+")
HISTOGRAM_SUFFIXES = ("_bucket", "_sum", "_count")


# ------------------------------------------------------------------------------------------
# Reporting


class Report:
    def __init__(self) -> None:
        self.passed = 0
        self.failed: list[str] = []
        self.warnings: list[str] = []
        self.section_name = ""

    def section(self, name: str) -> None:
        self.section_name = name
        print(f"\n== {name}")

    def ok(self, msg: str) -> None:
        self.passed += 1
        print(f"  ok    {msg}")

    def fail(self, msg: str) -> None:
        self.failed.append(f"{self.section_name}: {msg}")
        print(f"  FAIL  {msg}")

    def check(self, cond: bool, ok_msg: str, fail_msg: str | None = None) -> bool:
        if cond:
            self.ok(ok_msg)
        else:
            self.fail(fail_msg or ok_msg)
        return cond

    def warn(self, msg: str) -> None:
        self.warnings.append(f"{self.section_name}: {msg}")
        print(f"  warn  {msg}")

    def skip(self, msg: str) -> None:
        print(f"  skip  {msg}")

    def info(self, msg: str) -> None:
        print(f"  info  {msg}")


def rel(path: str, root: str) -> str:
    return os.path.relpath(path, root)


# ------------------------------------------------------------------------------------------
# Parsing every file


def load_all(deploy: str, root: str, r: Report) -> dict[str, list]:
    """Parses every YAML and JSON file under deploy/; returns path -> list of documents."""
    r.section("parse deploy/ (YAML, JSON)")
    docs: dict[str, list] = {}
    for dirpath, _, files in os.walk(deploy):
        for name in sorted(files):
            path = os.path.join(dirpath, name)
            try:
                if name.endswith((".yml", ".yaml")):
                    with open(path, encoding="utf-8") as f:
                        docs[path] = [d for d in yaml.safe_load_all(f) if d is not None]
                elif name.endswith(".json"):
                    with open(path, encoding="utf-8") as f:
                        docs[path] = [json.load(f)]
                else:
                    continue
                r.ok(f"{rel(path, root)} parses ({len(docs[path])} document(s))")
            except (yaml.YAMLError, json.JSONDecodeError, UnicodeDecodeError) as err:
                r.fail(f"{rel(path, root)} does not parse: {err}")
    if not docs:
        r.fail("no YAML or JSON file under deploy/")
    return docs


# ------------------------------------------------------------------------------------------
# Cargo workspace


class Workspace:
    def __init__(self, root: str) -> None:
        self.root = root
        self.members: list[str] = []  # member dirs relative to root
        self.packages: dict[str, str] = {}  # package name -> member dir
        self.bins: dict[str, str] = {}  # bin name -> package name
        # Target files other than src/lib.rs and src/main.rs named in a manifest: the Docker
        # dependency layer has only manifests plus those two stand-ins.
        self.odd_targets: list[str] = []
        manifest = os.path.join(root, "Cargo.toml")
        data = read_toml(manifest)
        # Local sources of [patch.*] entries (inline tables, which read_toml skips): cargo
        # needs them to resolve the dependency graph, so before the first build.
        self.patch_paths: list[str] = []
        section = ""
        with open(manifest, encoding="utf-8") as f:
            for line in f:
                line = line.split("#", 1)[0].strip()
                if line.startswith("["):
                    section = line
                elif section.startswith("[patch.") and (m := re.search(r'path\s*=\s*"([^"]+)"', line)):
                    self.patch_paths.append(os.path.normpath(m.group(1)))
        for pattern in data.get("workspace", {}).get("members", []):
            for d in sorted(glob.glob(os.path.join(root, pattern))):
                if os.path.isfile(os.path.join(d, "Cargo.toml")):
                    self.members.append(rel(d, root))
        for member in self.members:
            mdir = os.path.join(root, member)
            m = read_toml(os.path.join(mdir, "Cargo.toml"))
            pkg = m.get("package", {})
            name = pkg.get("name")
            if not name:
                continue
            self.packages[name] = member
            lib_path = (m.get("lib") or {}).get("path", "src/lib.rs")
            if os.path.normpath(lib_path) != "src/lib.rs":
                self.odd_targets.append(f"{member}: [lib] path {lib_path}")
            for b in m.get("bin", []):
                if os.path.normpath(b.get("path", "src/main.rs")) != "src/main.rs":
                    self.odd_targets.append(f"{member}: [[bin]] {b['name']} path {b.get('path')}")
            for kind in ("test", "bench", "example"):
                for t in m.get(kind, []):
                    self.odd_targets.append(f"{member}: explicit [[{kind}]] {t.get('name')}")
            bin_paths = set()
            for b in m.get("bin", []):
                self.bins[b["name"]] = name
                bin_paths.add(os.path.normpath(b.get("path", f"src/bin/{b['name']}.rs")))
            if pkg.get("autobins", True):
                if os.path.isfile(os.path.join(mdir, "src/main.rs")) and "src/main.rs" not in bin_paths:
                    self.bins.setdefault(name, name)
                for f in glob.glob(os.path.join(mdir, "src/bin/*.rs")):
                    self.bins.setdefault(os.path.splitext(os.path.basename(f))[0], name)

    def compile_time_inputs(self) -> list[tuple[str, str]]:
        """Files and dirs the compiler reads besides the sources: (path relative to root, why)."""
        inputs = []
        lit = re.compile(r'(include_str|include_bytes)!\(\s*"([^"]+)"\s*\)')
        mig = re.compile(r'(?:sqlx::)?migrate!\(\s*(?:"([^"]*)")?\s*\)')
        for member in self.members:
            mdir = os.path.join(self.root, member)
            for path in glob.glob(os.path.join(mdir, "src/**/*.rs"), recursive=True):
                with open(path, encoding="utf-8") as f:
                    text = f.read()
                for m in lit.finditer(text):
                    target = os.path.normpath(os.path.join(os.path.dirname(path), m.group(2)))
                    inputs.append((rel(target, self.root), f"{m.group(1)}! in {rel(path, self.root)}"))
                for m in mig.finditer(text):
                    target = os.path.normpath(os.path.join(mdir, m.group(1) or "migrations"))
                    inputs.append((rel(target, self.root), f"migrate! in {rel(path, self.root)}"))
        return inputs

    def source_metric_names(self) -> set[str]:
        names = set()
        for member in self.members:
            for path in glob.glob(os.path.join(self.root, member, "src/**/*.rs"), recursive=True):
                with open(path, encoding="utf-8") as f:
                    names.update(re.findall(r'"(nebula_[a-z0-9_]+)"', f.read()))
        return names


def read_toml(path: str) -> dict:
    with open(path, "rb") as f:
        raw = f.read()
    if tomllib is not None:
        return tomllib.loads(raw.decode("utf-8"))
    return mini_toml(raw.decode("utf-8"))  # pragma: no cover


def mini_toml(text: str) -> dict:  # pragma: no cover - only for Python < 3.11
    """Just enough TOML for Cargo manifests: tables, [[bin]], string and string-array keys."""
    data: dict = {}
    cur = data
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        if line.startswith("[["):
            name = line.strip("[]").strip()
            cur = {}
            data.setdefault(name, []).append(cur)
        elif line.startswith("["):
            cur = data
            for part in line.strip("[]").strip().split("."):
                cur = cur.setdefault(part, {})
        elif "=" in line:
            k, v = (s.strip() for s in line.split("=", 1))
            if v.startswith("["):
                cur[k] = re.findall(r'"([^"]*)"', v)
            elif v.startswith('"'):
                cur[k] = v.strip('"')
            elif v in ("true", "false"):
                cur[k] = v == "true"
    return data


# ------------------------------------------------------------------------------------------
# Dockerfile


class Stage:
    def __init__(self, base: str, name: str | None, index: int) -> None:
        self.base = base
        self.name = name
        self.index = index
        self.instructions: list[tuple[str, str]] = []


class Dockerfile:
    def __init__(self, path: str) -> None:
        self.path = path
        self.args: dict[str, str] = {}
        self.stages: list[Stage] = []
        with open(path, encoding="utf-8") as f:
            lines = f.read().splitlines()
        for instr, args in self._instructions(lines):
            if instr == "ARG" and not self.stages:
                k, _, v = args.partition("=")
                self.args[k.strip()] = v.strip().strip('"')
            elif instr == "FROM":
                toks = [t for t in args.split() if not t.startswith("--")]
                base = self._subst(toks[0])
                name = toks[2].lower() if len(toks) >= 3 and toks[1].upper() == "AS" else None
                self.stages.append(Stage(base, name, len(self.stages)))
            elif self.stages:
                self.stages[-1].instructions.append((instr, args))

    @staticmethod
    def _instructions(lines: list[str]):
        buf = ""
        for line in lines:
            stripped = line.strip()
            if buf and (not stripped or stripped.startswith("#")):
                continue  # comments and blank lines inside a continued instruction
            if not buf and (not stripped or stripped.startswith("#")):
                continue
            if line.rstrip().endswith("\\"):
                buf += line.rstrip()[:-1] + " "
                continue
            buf += line
            instr, _, args = buf.strip().partition(" ")
            yield instr.upper(), args.strip()
            buf = ""
        if buf:
            instr, _, args = buf.strip().partition(" ")
            yield instr.upper(), args.strip()

    def _subst(self, s: str) -> str:
        return re.sub(r"\$\{?([A-Za-z_][A-Za-z0-9_]*)\}?", lambda m: self.args.get(m.group(1), m.group(0)), s)

    def stage(self, name: str) -> Stage | None:
        for s in self.stages:
            if s.name == name.lower():
                return s
        return None

    def chain(self, stage: Stage) -> list[Stage]:
        """The stage and the stages it is built FROM, base first."""
        out = [stage]
        while True:
            parent = self.stage(out[0].base)
            if parent is None or parent is out[0]:
                return out
            out.insert(0, parent)

    def last(self, stage: Stage, instr: str) -> str | None:
        value = None
        for s in self.chain(stage):
            for i, a in s.instructions:
                if i == instr:
                    value = a
        return value

    def all_of(self, stage: Stage, instr: str) -> list[str]:
        return [a for s in self.chain(stage) for i, a in s.instructions if i == instr]


def parse_copy(args: str) -> tuple[dict[str, str], list[str], str]:
    flags = {}
    if args.lstrip().startswith("["):
        parts = json.loads(args)
    else:
        parts = shlex.split(args)
    rest = []
    for p in parts:
        if p.startswith("--") and not rest:
            k, _, v = p[2:].partition("=")
            flags[k] = v
        else:
            rest.append(p)
    return flags, rest[:-1], rest[-1] if rest else ""


class DockerIgnore:
    def __init__(self, path: str | None) -> None:
        self.path = path
        self.rules: list[tuple[bool, re.Pattern]] = []
        if path and os.path.isfile(path):
            with open(path, encoding="utf-8") as f:
                for line in f:
                    line = line.strip()
                    if not line or line.startswith("#"):
                        continue
                    neg = line.startswith("!")
                    pat = os.path.normpath(line[1:] if neg else line).lstrip("/")
                    self.rules.append((neg, re.compile(self._regex(pat))))

    @staticmethod
    def _regex(pat: str) -> str:
        out, i = "", 0
        while i < len(pat):
            if pat.startswith("**/", i):
                out += "(?:.*/)?"
                i += 3
            elif pat.startswith("**", i):
                out += ".*"
                i += 2
            elif pat[i] == "*":
                out += "[^/]*"
                i += 1
            elif pat[i] == "?":
                out += "[^/]"
                i += 1
            else:
                out += re.escape(pat[i])
                i += 1
        return "^" + out + "$"

    def excluded(self, path: str) -> bool:
        path = os.path.normpath(path)
        parts = path.split("/")
        prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
        result = False
        for neg, rx in self.rules:
            if any(rx.match(p) for p in prefixes):
                result = not neg
        return result


def check_dockerfile(path: str, context: str, root: str, ws: Workspace, targets: set[str], r: Report) -> Dockerfile | None:
    r.section(f"Dockerfile {rel(path, root)} (context {rel(context, root) or '.'})")
    try:
        df = Dockerfile(path)
    except (OSError, ValueError) as err:
        r.fail(f"cannot parse: {err}")
        return None
    if not r.check(bool(df.stages), f"{len(df.stages)} stages", "no FROM"):
        return None
    names = [s.name for s in df.stages if s.name]
    r.check(len(names) == len(set(names)), "stage names are unique", f"duplicate stage names: {names}")
    ignore_path = path + ".dockerignore"
    if not os.path.isfile(ignore_path):
        ignore_path = os.path.join(context, ".dockerignore")
    ignore = DockerIgnore(ignore_path if os.path.isfile(ignore_path) else None)
    if ignore.path:
        r.ok(f"ignore file {rel(ignore.path, root)}")
        for must in ("target/debug/nebula", ".env", "e2e/node_modules/x", "nebula.db"):
            r.check(ignore.excluded(must), f"context excludes {must}", f"context does not exclude {must}")
    else:
        r.warn("no .dockerignore: target/ (GBs) and .env would be sent to the builder")

    # COPY sources.
    copied_by_stage: dict[int, list[tuple[int, str]]] = {}
    for stage in df.stages:
        for n, (instr, args) in enumerate(stage.instructions):
            if instr not in ("COPY", "ADD"):
                continue
            flags, srcs, _dest = parse_copy(args)
            if "from" in flags:
                src_stage = df.stage(flags["from"])
                if src_stage is None and not re.search(r"[:/]", flags["from"]):
                    r.fail(f"COPY --from={flags['from']}: no such stage")
                elif src_stage is not None and src_stage.index >= stage.index:
                    r.fail(f"COPY --from={flags['from']}: stage is not built before {stage.name}")
                else:
                    for s in srcs:
                        b = os.path.basename(s)
                        if b in ws.bins:
                            r.ok(f"COPY --from={flags['from']} {s}: binary {b} (package {ws.bins[b]})")
                continue
            for s in srcs:
                matches = glob.glob(os.path.join(context, s))
                if not matches:
                    r.fail(f"COPY source {s} does not exist in the context")
                    continue
                hidden = [m for m in matches if ignore.excluded(rel(m, context))]
                if hidden:
                    r.fail(f"COPY source {s} is excluded by {rel(ignore.path, root)}")
                else:
                    r.ok(f"COPY source {s} exists")
                copied_by_stage.setdefault(stage.index, []).append((n, os.path.normpath(s)))

    # Cargo builds.
    builds = 0
    for stage in df.stages:
        copied: list[str] = []
        chain = df.chain(stage)
        for s in chain[:-1]:
            copied += [p for _, p in copied_by_stage.get(s.index, [])]
        first = True
        stage_copies = copied_by_stage.get(stage.index, [])
        for n, (instr, args) in enumerate(stage.instructions):
            copied_now = copied + [p for i, p in stage_copies if i < n]
            if instr != "RUN" or "cargo build" not in args:
                continue
            for cmd in re.split(r";|&&|\|\|", args):
                cmd = cmd.strip()
                if not cmd.startswith("cargo build"):
                    continue
                builds += 1
                check_cargo_build(cmd, ws, r)
            covered = lambda p: any(p == c or p.startswith(c.rstrip("/") + "/") or glob_match(c, p) for c in copied_now)
            if first:
                missing = [m for m in ws.members if not covered(os.path.join(m, "Cargo.toml"))]
                missing_patches = [p for p in ws.patch_paths if not covered(os.path.join(p, "Cargo.toml"))]
                r.check(not missing_patches,
                        f"first cargo build in stage {stage.name}: every [patch] source copied ({', '.join(ws.patch_paths) or 'none'})",
                        f"first cargo build in stage {stage.name}: [patch] sources not copied before it: {missing_patches} (cargo cannot resolve the graph)")
                r.check(not missing and covered("Cargo.lock") and covered("Cargo.toml"),
                        f"first cargo build in stage {stage.name}: root manifest, Cargo.lock and every member manifest copied ({', '.join(ws.members)})",
                        f"first cargo build in stage {stage.name}: not copied before it: {missing or 'Cargo.toml/Cargo.lock'} (cargo cannot load the workspace)")
                r.check(not ws.odd_targets, "every member's targets are src/lib.rs / src/main.rs (the dependency layer's stand-ins)",
                        f"targets the dependency layer does not stand in for (cargo may fail to load them there, "
                        f"and crates/*/tests is dockerignored): {'; '.join(ws.odd_targets)}")
                first = False
        if not first:
            # The last build must see every source dir and every embedded file.
            copied_all = copied + [p for _, p in stage_copies]
            covered = lambda p: any(p == c or p.startswith(c.rstrip("/") + "/") or glob_match(c, p) for c in copied_all)
            for m in ws.members:
                r.check(covered(os.path.join(m, "src")), f"{m}/src copied into {stage.name}", f"{m}/src is not copied into {stage.name}")
            for target, why in ws.compile_time_inputs():
                if not os.path.exists(os.path.join(root, target)):
                    r.fail(f"{target} ({why}) does not exist")
                elif not covered(target):
                    r.fail(f"{target} ({why}) is not copied into {stage.name}")
                elif ignore.excluded(target):
                    r.fail(f"{target} ({why}) is excluded by the ignore file")
                else:
                    r.ok(f"{target} copied ({why})")
    r.check(builds > 0, f"{builds} cargo build command(s)", "no cargo build command")
    for stage in df.stages:
        for instr, args in stage.instructions:
            if instr == "RUN":
                for cmd in re.split(r";|&&|\|\|", args):
                    toks = cmd.split()
                    if toks[:1] == ["cp"]:
                        for t in toks[1:]:
                            m = re.fullmatch(r"target/(?:release|debug)/([A-Za-z0-9_-]+)", t)
                            if m:
                                r.check(m.group(1) in ws.bins, f"cp {t}: a workspace binary",
                                        f"cp {t}: {m.group(1)} is not a binary of the workspace ({sorted(ws.bins)})")

    # Final images.
    final = set(t.lower() for t in targets)
    final.add(df.stages[-1].name or str(len(df.stages) - 1))
    for t in sorted(final):
        stage = df.stage(t) or (df.stages[-1] if t == str(len(df.stages) - 1) else None)
        if stage is None:
            r.fail(f"target {t}: no such stage")
            continue
        label = f"target {t}"
        user = df.last(stage, "USER")
        r.check(user is not None and user.split(":")[0] not in ("root", "0"),
                f"{label}: runs as non-root user {user}", f"{label}: runs as root (no non-root USER)")
        hc = df.last(stage, "HEALTHCHECK")
        if r.check(hc is not None and not hc.upper().startswith("NONE"), f"{label}: HEALTHCHECK {shorten(hc)}", f"{label}: no HEALTHCHECK"):
            if "curl" in hc:
                installs = " ".join(df.all_of(stage, "RUN"))
                r.check(re.search(r"(apt-get|apk)\s+(install|add)[^;&]*\bcurl\b", installs) is not None,
                        f"{label}: curl (used by HEALTHCHECK) is installed", f"{label}: HEALTHCHECK uses curl, which the image does not install")
        r.check(df.last(stage, "EXPOSE") is not None, f"{label}: EXPOSE {df.last(stage, 'EXPOSE')}", f"{label}: no EXPOSE")
        cmd = df.last(stage, "CMD") or df.last(stage, "ENTRYPOINT")
        if r.check(cmd is not None, f"{label}: CMD {cmd}", f"{label}: no CMD/ENTRYPOINT"):
            try:
                prog = json.loads(cmd)[0] if cmd.startswith("[") else cmd.split()[0]
            except (ValueError, IndexError):
                prog = ""
            r.check(os.path.basename(prog) in ws.bins, f"{label}: runs workspace binary {prog}",
                    f"{label}: CMD runs {prog!r}, not a workspace binary")
    return df


def glob_match(pattern: str, path: str) -> bool:
    return any(ch in pattern for ch in "*?[") and re.fullmatch(DockerIgnore._regex(pattern), path) is not None


def shorten(s: str | None, n: int = 70) -> str:
    s = " ".join((s or "").split())
    return s if len(s) <= n else s[: n - 1] + "…"


def check_cargo_build(cmd: str, ws: Workspace, r: Report) -> None:
    try:
        toks = shlex.split(cmd)
    except ValueError:
        toks = cmd.split()
    pkgs, bins = [], []
    for i, t in enumerate(toks):
        nxt = toks[i + 1] if i + 1 < len(toks) else ""
        if t in ("-p", "--package"):
            pkgs.append(nxt)
        elif t.startswith("--package="):
            pkgs.append(t.split("=", 1)[1])
        elif t == "--bin":
            bins.append(nxt)
        elif t.startswith("--bin="):
            bins.append(t.split("=", 1)[1])
    short = shorten(cmd, 90)
    r.check("--locked" in toks and "--release" in toks, f"`{short}`: --locked --release", f"`{short}`: missing --locked or --release")
    for p in pkgs:
        r.check(p in ws.packages, f"package {p} exists ({ws.packages.get(p)})", f"package {p} is not a workspace package ({sorted(ws.packages)})")
    for b in bins:
        r.check(b in ws.bins, f"binary {b} exists (package {ws.bins.get(b)})", f"binary {b} is not a workspace binary ({sorted(ws.bins)})")
    if not pkgs and not bins:
        r.warn(f"`{short}` names no package: it builds only the default members")


# ------------------------------------------------------------------------------------------
# Compose


class Compose:
    def __init__(self, path: str, data: dict) -> None:
        self.path = path
        self.dir = os.path.dirname(path)
        self.data = data
        self.services: dict[str, dict] = data.get("services") or {}

    def published(self, svc: dict) -> list[tuple[int, int]]:
        out = []
        for p in svc.get("ports") or []:
            if isinstance(p, dict):
                if p.get("published") is not None:
                    out.append((int(str(p["published"]).split("-")[0]), int(p["target"])))
                continue
            s = str(p).split("/")[0]
            parts = s.rsplit(":", 2) if s.count(":") <= 2 else s.rsplit(":", 2)
            if len(parts) == 1:
                continue
            host, cont = parts[-2], parts[-1]
            if host:
                out.append((int(host.split("-")[0]), int(cont.split("-")[0])))
        return out

    def container_ports(self, name: str, df_by_target: dict) -> set[int]:
        svc = self.services.get(name) or {}
        ports = {c for _, c in self.published(svc)}
        for e in svc.get("expose") or []:
            ports.add(int(str(e).split("/")[0]))
        for p in svc.get("ports") or []:
            if not isinstance(p, dict) and ":" not in str(p):
                ports.add(int(str(p).split("/")[0]))
        env = env_dict(svc.get("environment"))
        for k in ("BACKEND_ADDR",):
            if k in env and ":" in env[k]:
                ports.add(int(env[k].rsplit(":", 1)[1]))
        if "HTTP_PORT" in env:
            ports.add(int(env["HTTP_PORT"]))
        build = svc.get("build")
        if isinstance(build, dict) and build.get("target") in df_by_target:
            df, stage = df_by_target[build["target"]]
            for e in df.all_of(stage, "EXPOSE"):
                ports.update(int(x.split("/")[0]) for x in e.split())
        return ports

    def mounts(self, name: str) -> list[tuple[str, str, bool]]:
        """(source, container target, is_bind) of a service's volumes."""
        out = []
        for v in (self.services.get(name) or {}).get("volumes") or []:
            if isinstance(v, dict):
                src, dst = v.get("source", ""), v.get("target", "")
                out.append((src, dst, v.get("type") == "bind"))
            else:
                parts = str(v).split(":")
                if len(parts) == 1:
                    out.append(("", parts[0], False))
                else:
                    src, dst = parts[0], parts[1]
                    out.append((src, dst, src.startswith((".", "/", "~"))))
        return out

    def host_path(self, name: str, container_path: str) -> str | None:
        """Where a container path of a service comes from on the host (bind mounts only)."""
        best = None
        for src, dst, bind in self.mounts(name):
            dst = dst.rstrip("/")
            if bind and (container_path == dst or container_path.startswith(dst + "/")):
                if best is None or len(dst) > len(best[1]):
                    best = (src, dst)
        if best is None:
            return None
        return os.path.normpath(os.path.join(self.dir, best[0] + container_path[len(best[1]):]))


def env_dict(env) -> dict[str, str]:
    if isinstance(env, dict):
        return {str(k): "" if v is None else str(v) for k, v in env.items()}
    out = {}
    for item in env or []:
        k, _, v = str(item).partition("=")
        out[k] = v
    return out


def walk_strings(node):
    if isinstance(node, dict):
        for v in node.values():
            yield from walk_strings(v)
    elif isinstance(node, list):
        for v in node:
            yield from walk_strings(v)
    elif isinstance(node, str):
        yield node


def check_compose(path: str, data: dict, root: str, ws: Workspace, r: Report) -> tuple[Compose, dict]:
    r.section(f"compose {rel(path, root)}")
    c = Compose(path, data)
    base = os.path.basename(path)
    df_by_target: dict[str, tuple[Dockerfile, Stage]] = {}
    if not r.check(isinstance(c.services, dict) and bool(c.services), f"{len(c.services)} services: {', '.join(c.services)}", "no services"):
        return c, df_by_target
    known = {"name", "services", "volumes", "networks", "configs", "secrets", "version", "include"}
    for k in data:
        if k not in known and not str(k).startswith("x-"):
            r.fail(f"unknown top-level key {k!r}")

    # Interpolation: ${VAR:?msg} required, lone `$` is an error in compose.
    required = set()
    for s in walk_strings(data):
        for m in re.finditer(r"\$(\$|\{([^}]*)\}|[A-Za-z_][A-Za-z0-9_]*|)", s):
            tok = m.group(1)
            if tok == "":
                r.fail(f"unescaped `$` in {shorten(s)!r} (write $$)")
            elif tok.startswith("{"):
                mm = re.match(r"([A-Za-z_][A-Za-z0-9_]*)(:?[?\-+])?", m.group(2))
                if not mm:
                    r.fail(f"bad interpolation ${{{m.group(2)}}}")
                elif mm.group(2) in (":?", "?"):
                    required.add(mm.group(1))
    if required:
        example = os.path.join(c.dir, ".env.example")
        listed = set()
        if os.path.isfile(example):
            with open(example, encoding="utf-8") as f:
                listed = set(re.findall(r"^([A-Za-z_][A-Za-z0-9_]*)=", f.read(), re.M))
        missing = sorted(required - listed)
        r.check(not missing, f"required variables {', '.join(sorted(required))} are listed in {rel(example, root)}",
                f"required variables not listed in {rel(example, root)}: {', '.join(missing)}")

    # Builds first: their Dockerfiles tell image healthchecks and ports.
    for name, svc in c.services.items():
        build = svc.get("build")
        if build is None:
            r.check(bool(svc.get("image")), f"{name}: image {svc.get('image')}", f"{name}: neither image nor build")
            continue
        if isinstance(build, str):
            build = {"context": build}
        ctx = os.path.normpath(os.path.join(c.dir, build.get("context", ".")))
        dfp = os.path.normpath(os.path.join(ctx, build.get("dockerfile", "Dockerfile")))
        if not r.check(os.path.isdir(ctx), f"{name}: build context {rel(ctx, root) or '.'} exists", f"{name}: build context {ctx} missing"):
            continue
        if not r.check(os.path.isfile(dfp), f"{name}: dockerfile {rel(dfp, root)} exists", f"{name}: dockerfile {dfp} missing"):
            continue
        df = Dockerfile(dfp)
        target = build.get("target")
        stage = df.stage(target) if target else df.stages[-1]
        if r.check(stage is not None, f"{name}: build target {target or '(last stage)'} is a stage", f"{name}: build target {target} is not a stage of {rel(dfp, root)}"):
            df_by_target[target or (stage.name or "")] = (df, stage)

    for name, svc in c.services.items():
        # Healthcheck.
        hc = svc.get("healthcheck")
        build = svc.get("build")
        target = build.get("target") if isinstance(build, dict) else None
        image_hc = None
        if target in df_by_target:
            df, stage = df_by_target[target]
            image_hc = df.last(stage, "HEALTHCHECK")
        has_hc = (isinstance(hc, dict) and not hc.get("disable") and hc.get("test") not in (None, ["NONE"])) or bool(image_hc)
        if isinstance(hc, dict) and isinstance(hc.get("test"), list):
            r.check(hc["test"][0] in ("CMD", "CMD-SHELL", "NONE"), f"{name}: healthcheck {shorten(' '.join(map(str, hc['test'])), 60)}",
                    f"{name}: healthcheck test must start with CMD, CMD-SHELL or NONE")
        elif not has_hc:
            r.fail(f"{name}: no healthcheck")
        # Ports.
        for host, cont in c.published(svc):
            r.ok(f"{name}: publishes {host} -> {cont}")
        # Volumes.
        for src, dst, bind in c.mounts(name):
            if bind:
                hp = os.path.normpath(os.path.join(c.dir, os.path.expanduser(src)))
                r.check(os.path.exists(hp), f"{name}: mounts {src} -> {dst}", f"{name}: bind mount source {src} ({hp}) does not exist")
            elif src:
                r.check(src in (data.get("volumes") or {}), f"{name}: volume {src} declared", f"{name}: volume {src} is not declared under top-level volumes")
        # depends_on.
        deps = svc.get("depends_on") or {}
        if isinstance(deps, list):
            deps = {d: {"condition": "service_started"} for d in deps}
        for dep, spec in deps.items():
            if not r.check(dep in c.services, f"{name}: depends_on {dep} ({(spec or {}).get('condition', 'service_started')})",
                           f"{name}: depends_on {dep}, which is not a service"):
                continue
            cond = (spec or {}).get("condition", "service_started")
            if cond not in ("service_started", "service_healthy", "service_completed_successfully"):
                r.fail(f"{name}: depends_on {dep}: unknown condition {cond}")
            if cond == "service_healthy":
                dsvc = c.services[dep]
                dbuild = dsvc.get("build")
                dtarget = dbuild.get("target") if isinstance(dbuild, dict) else None
                dhc = dsvc.get("healthcheck") or (df_by_target[dtarget][0].last(df_by_target[dtarget][1], "HEALTHCHECK") if dtarget in df_by_target else None)
                if not dhc:
                    r.fail(f"{name}: waits for {dep} to be healthy, but {dep} has no healthcheck")
        if (svc.get("deploy") or {}).get("replicas", 1) > 1:
            r.check(not svc.get("container_name") and not c.published(svc),
                    f"{name}: replicated, no container_name or published port", f"{name}: replicas > 1 cannot have a container_name or a published host port")

    # The promised ports.
    published_all: dict[int, str] = {}
    for name, svc in c.services.items():
        for host, _ in c.published(svc):
            if host in published_all:
                r.fail(f"host port {host} published by both {published_all[host]} and {name}")
            published_all[host] = name
    for name, ports in EXPECTED_PORTS.get(base, {}).items():
        if name not in c.services:
            r.fail(f"expected service {name} is missing")
            continue
        got = {h for h, _ in c.published(c.services[name])}
        for p in ports:
            r.check(p in got, f"{name} publishes host port {p}", f"{name} does not publish host port {p} (has {sorted(got)})")
    if REPLICATED_SERVICE[0] == base:
        _, svc_name, n = REPLICATED_SERVICE
        replicas = ((c.services.get(svc_name) or {}).get("deploy") or {}).get("replicas", 1)
        r.check(replicas >= n, f"{svc_name} runs {replicas} replicas", f"{svc_name} runs {replicas} replica(s), expected >= {n}")
    return c, df_by_target


def check_url_host(url_or_hostport: str, c: Compose | None, df_by_target: dict, what: str, r: Report) -> None:
    if c is None:
        return
    if "://" in url_or_hostport:
        u = urllib.parse.urlsplit(url_or_hostport)
        host, port = u.hostname, u.port or (443 if u.scheme == "https" else 80)
    else:
        host, _, port = url_or_hostport.rpartition(":")
        port = int(port)
    if host in ("localhost", "127.0.0.1"):
        return
    if not r.check(host in c.services, f"{what}: {host} is a compose service", f"{what}: {host} is not a service of {os.path.basename(c.path)}"):
        return
    ports = c.container_ports(host, df_by_target)
    if ports:
        r.check(port in ports, f"{what}: {host} listens on {port}", f"{what}: {host} does not listen on {port} (known ports {sorted(ports)})")


# ------------------------------------------------------------------------------------------
# nginx


def duration_seconds(v: str) -> float:
    m = re.fullmatch(r"(\d+)(ms|s|m|h)?", v)
    if not m:
        return -1
    n, unit = int(m.group(1)), m.group(2) or "s"
    return n * {"ms": 0.001, "s": 1, "m": 60, "h": 3600}[unit]


def check_nginx(path: str, root: str, c: Compose | None, df_by_target: dict, ping: int, r: Report) -> None:
    r.section(f"nginx {rel(path, root)}")
    if not os.path.isfile(path):
        r.fail("missing")
        return
    with open(path, encoding="utf-8") as f:
        text = "\n".join(line.split("#", 1)[0] for line in f.read().splitlines())
    r.check(text.count("{") == text.count("}"), "braces balance", "unbalanced braces")
    if c is not None:
        mounted = any(os.path.normpath(os.path.join(c.dir, src)) == os.path.normpath(path)
                      for name in c.services for src, _, bind in c.mounts(name) if bind)
        r.check(mounted, "mounted into a compose service", "not mounted by any compose service")
    upstreams = re.findall(r"upstream\s+(\S+)\s*\{([^}]*)\}", text)
    if r.check(bool(upstreams), f"upstream(s): {', '.join(u for u, _ in upstreams)}", "no upstream block"):
        for name, body in upstreams:
            r.check(re.search(r"^\s*(least_conn|ip_hash|hash\s|random)", body, re.M) is not None,
                    f"upstream {name}: balancing method {re.search(r'(least_conn|ip_hash|hash|random)', body).group(1) if re.search(r'(least_conn|ip_hash|hash|random)', body) else ''}",
                    f"upstream {name}: no least_conn / ip_hash (round robin ignores long-lived WebSockets)")
            for server in re.findall(r"^\s*server\s+(\S+)", body, re.M):
                check_url_host(server.rstrip(";"), c, df_by_target, f"upstream {name} server", r)
    # The location that upgrades connections.
    ws_locations = [m for m in re.finditer(r"location\s+[^{]*\{([^}]*)\}", text) if "Upgrade" in m.group(1)]
    if r.check(bool(ws_locations), "a location proxies WebSockets (Upgrade header)", "no location sets the Upgrade header"):
        for m in ws_locations:
            body = m.group(1)
            r.check(re.search(r"proxy_set_header\s+Upgrade\s+\$http_upgrade", body) is not None, "proxy_set_header Upgrade $http_upgrade", "Upgrade header not forwarded from $http_upgrade")
            r.check(re.search(r"proxy_set_header\s+Connection\s+(\$connection_upgrade|\"?upgrade\"?)", body, re.I) is not None,
                    "proxy_set_header Connection upgrade", "Connection header not set to upgrade")
            r.check(re.search(r"proxy_http_version\s+1\.1", body) is not None, "proxy_http_version 1.1", "proxy_http_version 1.1 missing (WebSockets need HTTP/1.1)")
            t = re.search(r"proxy_read_timeout\s+(\S+);", body)
            secs = duration_seconds(t.group(1)) if t else 60
            r.check(secs > ping, f"proxy_read_timeout {secs:g}s > server ping interval {ping}s",
                    f"proxy_read_timeout {secs:g}s is not above the server ping interval {ping}s: idle WebSockets would be cut")
    if "$connection_upgrade" in text:
        r.check("map $http_upgrade $connection_upgrade" in " ".join(text.split()), "map $http_upgrade $connection_upgrade defined", "$connection_upgrade used but not mapped")
    listens = [int(x) for x in re.findall(r"listen\s+(?:[\d.]+:)?(\d+)", text)]
    if c is not None and "lb" in c.services:
        conts = {cont for _, cont in c.published(c.services["lb"])}
        r.check(bool(conts & set(listens)), f"listens on {listens}, the lb service's published container port",
                f"listens on {listens} but the lb service publishes container ports {sorted(conts)}")


# ------------------------------------------------------------------------------------------
# Prometheus


def check_prometheus(deploy: str, root: str, docs: dict, c: Compose | None, df_by_target: dict, r: Report) -> list[str]:
    """Returns the alert expressions."""
    r.section("prometheus")
    cfg_path = os.path.join(deploy, "prometheus/prometheus.yml")
    alerts_path = os.path.join(deploy, "prometheus/alerts.yml")
    exprs: list[str] = []
    cfg = (docs.get(cfg_path) or [None])[0]
    if not r.check(isinstance(cfg, dict), f"{rel(cfg_path, root)} loaded", f"{rel(cfg_path, root)} missing or empty"):
        return exprs
    jobs = [j.get("job_name") for j in cfg.get("scrape_configs") or []]
    r.check(len(jobs) == len(set(jobs)), f"jobs {', '.join(map(str, jobs))}", f"duplicate job names {jobs}")
    for job in cfg.get("scrape_configs") or []:
        for sc in job.get("static_configs") or []:
            for t in sc.get("targets") or []:
                check_url_host(t, c, df_by_target, f"job {job['job_name']} target", r)
        for dns in job.get("dns_sd_configs") or []:
            for n in dns.get("names") or []:
                check_url_host(f"{n}:{dns.get('port')}", c, df_by_target, f"job {job['job_name']} dns_sd", r)
    for j in ("nebula", "nebula-notifier"):
        r.check(j in jobs, f"job {j} scraped", f"no job {j}")
    # Rule files resolve relative to the config file inside the container; map through mounts.
    container_cfg = None
    if c is not None and "prometheus" in c.services:
        for src, dst, bind in c.mounts("prometheus"):
            if bind and os.path.normpath(os.path.join(c.dir, src)) == os.path.normpath(cfg_path):
                container_cfg = dst
        r.check(container_cfg is not None, f"config mounted at {container_cfg}", "prometheus.yml is not mounted into the prometheus service")
    for rf in cfg.get("rule_files") or []:
        local = os.path.normpath(os.path.join(os.path.dirname(cfg_path), rf))
        r.check(os.path.isfile(local), f"rule file {rf} exists beside the config", f"rule file {rf} not found at {rel(local, root)}")
        if container_cfg:
            cpath = rf if rf.startswith("/") else os.path.normpath(os.path.join(os.path.dirname(container_cfg), rf))
            hp = c.host_path("prometheus", cpath)
            r.check(hp is not None and os.path.isfile(hp), f"rule file {cpath} is mounted in the container",
                    f"rule file {cpath} is not mounted into the prometheus service")
    rules_doc = (docs.get(alerts_path) or [None])[0]
    if not r.check(isinstance(rules_doc, dict) and rules_doc.get("groups"), f"{rel(alerts_path, root)} has groups", f"{rel(alerts_path, root)} missing or without groups"):
        return exprs
    names = []
    for g in rules_doc["groups"]:
        for rule in g.get("rules") or []:
            if "alert" not in rule:
                continue
            name = rule["alert"]
            names.append(name)
            expr = str(rule.get("expr", ""))
            exprs.append(expr)
            problems = []
            if not expr.strip():
                problems.append("no expr")
            if expr.count("(") != expr.count(")") or expr.count("{") != expr.count("}") or expr.count("[") != expr.count("]"):
                problems.append("unbalanced brackets")
            if (rule.get("labels") or {}).get("severity") not in ("critical", "warning", "info"):
                problems.append("labels.severity must be critical, warning or info")
            if not (rule.get("annotations") or {}).get("summary"):
                problems.append("no annotations.summary")
            if "for" in rule and not re.fullmatch(r"(\d+(ms|s|m|h|d|w|y))+", str(rule["for"])):
                problems.append(f"bad for: {rule['for']}")
            r.check(not problems, f"alert {name}", f"alert {name}: {'; '.join(problems)}")
    r.check(len(names) == len(set(names)), f"{len(names)} alerts, unique names", f"duplicate alert names {names}")
    joined = "\n;\n".join(" ".join(e.split()) for e in exprs)
    for what, pattern in REQUIRED_ALERTS.items():
        r.check(re.search(pattern, joined) is not None, f"alert for {what}", f"no alert for {what} (pattern {pattern})")
    promtool = shutil.which("promtool")
    if promtool:
        for args in (["check", "config", cfg_path], ["check", "rules", alerts_path]):
            p = subprocess.run([promtool, *args], capture_output=True, text=True)
            r.check(p.returncode == 0, f"promtool {' '.join(args[:2])} {rel(args[2], root)}",
                    f"promtool {' '.join(args[:2])} failed:\n{p.stdout}{p.stderr}")
    else:
        r.skip("promtool not on PATH: PromQL syntax not checked (Debian package `prometheus` has it)")
    return exprs


# ------------------------------------------------------------------------------------------
# Grafana


def check_grafana(deploy: str, root: str, docs: dict, c: Compose | None, df_by_target: dict, r: Report) -> list[str]:
    """Returns the dashboards' expressions."""
    r.section("grafana")
    exprs: list[str] = []
    ds_path = os.path.join(deploy, "grafana/provisioning/datasources/prometheus.yml")
    prov_path = os.path.join(deploy, "grafana/provisioning/dashboards/dashboards.yml")
    uids = set()
    ds = (docs.get(ds_path) or [None])[0]
    if r.check(isinstance(ds, dict) and ds.get("datasources"), f"{rel(ds_path, root)} has datasources", f"{rel(ds_path, root)} missing or empty"):
        for d in ds["datasources"]:
            uids.add(d.get("uid"))
            r.check(bool(d.get("uid")), f"datasource {d.get('name')} uid {d.get('uid')}", f"datasource {d.get('name')} has no fixed uid (dashboards cannot reference it)")
            if d.get("url"):
                check_url_host(d["url"], c, df_by_target, f"datasource {d.get('name')} url", r)
    dash_dirs = []
    prov = (docs.get(prov_path) or [None])[0]
    if r.check(isinstance(prov, dict) and prov.get("providers"), f"{rel(prov_path, root)} has providers", f"{rel(prov_path, root)} missing or empty"):
        for p in prov["providers"]:
            cpath = (p.get("options") or {}).get("path")
            hp = c.host_path("grafana", cpath) if c is not None and "grafana" in c.services and cpath else None
            if r.check(hp is not None and os.path.isdir(hp), f"provider {p.get('name')}: {cpath} is mounted from {rel(hp, root) if hp else '?'}",
                       f"provider {p.get('name')}: {cpath} is not bind-mounted into the grafana service"):
                dash_dirs.append(hp)
    if c is not None and "grafana" in c.services:
        hp = c.host_path("grafana", "/etc/grafana/provisioning/datasources/prometheus.yml")
        r.check(hp is not None and os.path.isfile(hp), "provisioning mounted at /etc/grafana/provisioning", "provisioning is not mounted at /etc/grafana/provisioning")
        home = env_dict(c.services["grafana"].get("environment")).get("GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH")
        if home:
            hp = c.host_path("grafana", home)
            r.check(hp is not None and os.path.isfile(hp), f"home dashboard {home} exists", f"home dashboard {home} is not mounted")
    dashboards = sorted(glob.glob(os.path.join(deploy, "grafana/dashboards/*.json")))
    r.check(bool(dashboards), f"{len(dashboards)} dashboard(s)", "no dashboard JSON")
    for path in dashboards:
        if dash_dirs:
            r.check(any(os.path.dirname(path) == d for d in dash_dirs), f"{rel(path, root)} is in a provisioned folder", f"{rel(path, root)} is not in a provisioned folder")
        d = (docs.get(path) or [None])[0]
        if not isinstance(d, dict):
            continue
        r.check(bool(d.get("uid")) and bool(d.get("title")), f"dashboard {d.get('title')} uid {d.get('uid')}", f"{rel(path, root)}: uid and title required")
        variables = {v.get("name") for v in (d.get("templating") or {}).get("list", [])}
        for v in (d.get("templating") or {}).get("list", []):
            q = v.get("query")
            q = q.get("query") if isinstance(q, dict) else q
            if isinstance(q, str):
                exprs.append(q)
        panels = []
        for p in d.get("panels") or []:
            panels.append(p)
            panels.extend(p.get("panels") or [])
        ids = [p.get("id") for p in panels]
        r.check(len(ids) == len(set(ids)) and None not in ids, f"{len(panels)} panels, unique ids", f"panel ids missing or duplicated: {ids}")
        panel_exprs: list[tuple[str, str]] = []
        for p in panels:
            if p.get("type") == "row":
                continue
            problems = []
            gp = p.get("gridPos") or {}
            if not all(k in gp for k in ("h", "w", "x", "y")) or gp.get("x", 0) + gp.get("w", 0) > 24:
                problems.append("gridPos h/w/x/y within 24 columns")
            targets = p.get("targets") or []
            if not targets or not all(str(t.get("expr", "")).strip() for t in targets):
                problems.append("every panel needs targets with expr")
            for obj in [p, *targets]:
                uid = (obj.get("datasource") or {}).get("uid") if isinstance(obj.get("datasource"), dict) else None
                if uid and not uid.startswith("$") and uid not in uids:
                    problems.append(f"datasource uid {uid} is not provisioned")
            for t in targets:
                e = str(t.get("expr", ""))
                exprs.append(e)
                if e.count("(") != e.count(")") or e.count("{") != e.count("}") or e.count("[") != e.count("]"):
                    problems.append(f"unbalanced brackets in {shorten(e, 50)}")
                for var in re.findall(r"\$([A-Za-z_]\w*)", e):
                    if not var.startswith("__") and var not in variables:
                        problems.append(f"${var} is not a dashboard variable")
                if "histogram_quantile" in e and not re.search(r"by \([^)]*\ble\b", e):
                    problems.append("histogram_quantile without sum by (le)")
            panel_exprs.append((p.get("title", ""), "\n".join(str(t.get("expr", "")) for t in targets)))
            r.check(not problems, f"panel {p.get('title')!r}", f"panel {p.get('title')!r}: {'; '.join(sorted(set(problems)))}")
        for what, pattern in REQUIRED_PANELS.items():
            hit = next((title for title, e in panel_exprs if re.search(pattern, e)), None)
            r.check(hit is not None, f"required panel {what}: {hit!r}", f"no panel shows {what} (pattern {pattern})")
    return exprs


# ------------------------------------------------------------------------------------------
# Kubernetes


def check_k8s(deploy: str, root: str, docs: dict, run_kubectl: bool, r: Report) -> None:
    r.section("kubernetes deploy/k8s")
    objs = []
    for path, ds in sorted(docs.items()):
        if os.path.dirname(path) == os.path.join(deploy, "k8s"):
            for d in ds:
                if not isinstance(d, dict):
                    r.fail(f"{rel(path, root)}: a document is not a mapping")
                    continue
                ok = all(d.get(k) for k in ("apiVersion", "kind")) and (d.get("metadata") or {}).get("name")
                if r.check(bool(ok), f"{d.get('kind')}/{(d.get('metadata') or {}).get('name')} ({d.get('apiVersion')})",
                           f"{rel(path, root)}: a document lacks apiVersion, kind or metadata.name"):
                    objs.append(d)
    by_kind: dict[str, list[dict]] = {}
    for o in objs:
        by_kind.setdefault(o["kind"], []).append(o)
    for kind in ("Deployment", "Service", "HorizontalPodAutoscaler", "Secret", "PodDisruptionBudget"):
        r.check(kind in by_kind, f"has a {kind}", f"no {kind}")
    secrets = {s["metadata"]["name"] for s in by_kind.get("Secret", [])}
    deployments = {d["metadata"]["name"]: d for d in by_kind.get("Deployment", [])}
    pod_labels = {}
    for name, d in deployments.items():
        spec = d.get("spec") or {}
        tmpl = spec.get("template") or {}
        labels = (tmpl.get("metadata") or {}).get("labels") or {}
        pod_labels[name] = labels
        sel = (spec.get("selector") or {}).get("matchLabels") or {}
        r.check(d.get("apiVersion") == "apps/v1", f"Deployment {name}: apps/v1", f"Deployment {name}: apiVersion must be apps/v1")
        r.check(bool(sel) and all(labels.get(k) == v for k, v in sel.items()), f"Deployment {name}: selector matches the pod labels",
                f"Deployment {name}: selector {sel} does not match the pod labels {labels}")
        r.check((spec.get("replicas") or 1) >= 2, f"Deployment {name}: {spec.get('replicas')} replicas", f"Deployment {name}: fewer than 2 replicas")
        pod = tmpl.get("spec") or {}
        psc = pod.get("securityContext") or {}
        for ctr in pod.get("containers") or []:
            cn = f"Deployment {name} container {ctr.get('name')}"
            csc = ctr.get("securityContext") or {}
            r.check(bool(csc.get("runAsNonRoot", psc.get("runAsNonRoot"))) and (csc.get("runAsUser", psc.get("runAsUser")) or 1) != 0,
                    f"{cn}: runAsNonRoot", f"{cn}: runAsNonRoot not set (or runAsUser 0)")
            r.check(csc.get("allowPrivilegeEscalation") is False, f"{cn}: allowPrivilegeEscalation false", f"{cn}: allowPrivilegeEscalation not false")
            ports = {p.get("name"): p.get("containerPort") for p in ctr.get("ports") or []}
            for probe, path in (("livenessProbe", "/health/live"), ("readinessProbe", "/health/ready")):
                hg = (ctr.get(probe) or {}).get("httpGet") or {}
                r.check(hg.get("path") == path, f"{cn}: {probe} GET {path}", f"{cn}: {probe} must GET {path} (has {hg.get('path')})")
                port = hg.get("port")
                r.check(port in ports or port in ports.values(), f"{cn}: {probe} port {port} is a container port", f"{cn}: {probe} port {port} is not a container port")
            req = (ctr.get("resources") or {}).get("requests") or {}
            r.check("cpu" in req and "memory" in req, f"{cn}: requests cpu {req.get('cpu')} memory {req.get('memory')}",
                    f"{cn}: resources.requests cpu and memory required (the CPU HPA divides by the request)")
            r.check(bool((ctr.get("resources") or {}).get("limits", {}).get("memory")), f"{cn}: memory limit", f"{cn}: no memory limit")
            for ef in ctr.get("envFrom") or []:
                sname = (ef.get("secretRef") or {}).get("name")
                if sname:
                    r.check(sname in secrets, f"{cn}: envFrom Secret {sname} defined", f"{cn}: envFrom Secret {sname} is not in the manifests")
            env = {e.get("name"): e.get("value") for e in ctr.get("env") or []}
            grace = int(env.get("SHUTDOWN_GRACE_SECONDS") or 10)
            pre = ((ctr.get("lifecycle") or {}).get("preStop") or {}).get("exec", {}).get("command") or []
            pre_sleep = int(pre[1]) if len(pre) == 2 and pre[0] == "sleep" and str(pre[1]).isdigit() else 0
            tgp = pod.get("terminationGracePeriodSeconds", 30)
            r.check(tgp > grace + pre_sleep, f"{cn}: terminationGracePeriodSeconds {tgp} > preStop {pre_sleep}s + SHUTDOWN_GRACE_SECONDS {grace}",
                    f"{cn}: terminationGracePeriodSeconds {tgp} must exceed preStop {pre_sleep}s + SHUTDOWN_GRACE_SECONDS {grace}")
            r.check(env.get("DEV_MODE") == "false", f"{cn}: DEV_MODE=false", f"{cn}: DEV_MODE must be \"false\" in production")
    for s in by_kind.get("Service", []):
        sel = (s.get("spec") or {}).get("selector") or {}
        hits = [n for n, labels in pod_labels.items() if sel and all(labels.get(k) == v for k, v in sel.items())]
        r.check(bool(hits), f"Service {s['metadata']['name']} selects Deployment {', '.join(hits)}", f"Service {s['metadata']['name']}: selector {sel} selects no Deployment's pods")
    for h in by_kind.get("HorizontalPodAutoscaler", []):
        hn = f"HPA {h['metadata']['name']}"
        spec = h.get("spec") or {}
        ref = spec.get("scaleTargetRef") or {}
        r.check(h.get("apiVersion") == "autoscaling/v2", f"{hn}: autoscaling/v2", f"{hn}: apiVersion must be autoscaling/v2")
        r.check(ref.get("kind") == "Deployment" and ref.get("name") in deployments and ref.get("apiVersion") == "apps/v1",
                f"{hn}: targets Deployment {ref.get('name')}", f"{hn}: scaleTargetRef {ref} is not a Deployment of these manifests")
        cpu = [m for m in spec.get("metrics") or [] if m.get("type") == "Resource" and (m.get("resource") or {}).get("name") == "cpu"]
        r.check(bool(cpu), f"{hn}: scales on CPU", f"{hn}: no CPU resource metric")
        r.check(2 <= (spec.get("minReplicas") or 1) <= (spec.get("maxReplicas") or 0), f"{hn}: {spec.get('minReplicas')}..{spec.get('maxReplicas')} replicas",
                f"{hn}: need 2 <= minReplicas <= maxReplicas")
    for p in by_kind.get("PodDisruptionBudget", []):
        sel = ((p.get("spec") or {}).get("selector") or {}).get("matchLabels") or {}
        hits = [n for n, labels in pod_labels.items() if sel and all(labels.get(k) == v for k, v in sel.items())]
        r.check(p.get("apiVersion") == "policy/v1" and bool(hits), f"PDB {p['metadata']['name']} covers Deployment {', '.join(hits)}",
                f"PDB {p['metadata']['name']}: policy/v1 with a selector matching a Deployment required")
    if not run_kubectl:
        r.skip("kubectl apply --dry-run=client: not run (it needs a cluster's API discovery even with "
               "--validate=false; pass --kubectl where a kubeconfig points at a cluster)")
        return
    kubectl = shutil.which("kubectl")
    if not kubectl:
        r.skip("kubectl not on PATH")
        return
    p = subprocess.run([kubectl, "apply", "--dry-run=client", "--validate=false", "-f", os.path.join(deploy, "k8s")],
                       capture_output=True, text=True, timeout=120)
    out = p.stdout + p.stderr
    if p.returncode != 0 and re.search(r"connection refused|couldn't get current server API group list|unable to recognize|no configuration has been provided", out):
        r.skip(f"kubectl apply --dry-run=client needs a reachable cluster: {shorten(out.strip().splitlines()[-1], 120)}")
    else:
        r.check(p.returncode == 0, "kubectl apply --dry-run=client", f"kubectl apply --dry-run=client failed:\n{out}")


# ------------------------------------------------------------------------------------------
# Metric names


def referenced_metrics(exprs: list[str]) -> set[str]:
    return {m for e in exprs for m in METRIC_RE.findall(e)}


def base_name(name: str) -> str:
    for s in HISTOGRAM_SUFFIXES:
        if name.endswith(s):
            return name[: -len(s)]
    return name


def scrape(url: str) -> tuple[set[str], dict[str, str]]:
    """Returns (sample names, TYPE name -> type) of one /metrics endpoint."""
    u = urllib.parse.urlsplit(url)
    if u.path in ("", "/"):
        url = urllib.parse.urlunsplit((u.scheme, u.netloc, "/metrics", u.query, ""))
    with urllib.request.urlopen(url, timeout=10) as resp:
        body = resp.read().decode("utf-8", "replace")
    samples, types = set(), {}
    for line in body.splitlines():
        if line.startswith("# TYPE "):
            parts = line.split()
            if len(parts) >= 4:
                types[parts[2]] = parts[3]
        elif line and not line.startswith("#"):
            samples.add(re.split(r"[{\s]", line, 1)[0])
    return samples, types


def check_metrics(exprs: list[str], ws: Workspace, urls: list[str], allow_missing: set[str], r: Report) -> None:
    r.section("metric names used by the dashboard and the alerts")
    refs = referenced_metrics(exprs)
    bases = sorted({base_name(n) for n in refs})
    r.info(f"{len(bases)} names referenced: {', '.join(bases)}")
    in_source = ws.source_metric_names()
    not_in_source = [b for b in bases if b not in in_source and not any(n in in_source for n in refs if base_name(n) == b)]
    if not_in_source:
        r.warn(f"not (yet) a string literal in crates/*/src: {', '.join(not_in_source)}")
    else:
        r.ok("every referenced name appears in the crates' sources")
    if not urls:
        r.skip("live /metrics not checked (pass --metrics-url URL[,URL])")
        return
    exported_samples: set[str] = set()
    exported_types: dict[str, str] = {}
    for url in urls:
        try:
            samples, types = scrape(url)
        except (urllib.error.URLError, OSError, ValueError) as err:
            r.fail(f"cannot scrape {url}: {err}")
            continue
        n = len({base_name(s) for s in samples if s.startswith("nebula_")} | {t for t in types if t.startswith("nebula_")})
        r.ok(f"scraped {url}: {n} nebula_* metrics")
        exported_samples |= samples
        exported_types.update(types)

    def exported(name: str) -> bool:
        if name in exported_samples or name in exported_types:
            return True
        b = base_name(name)
        return b != name and exported_types.get(b) in ("histogram", "summary")

    missing = []
    for name in sorted(refs):
        if exported(name):
            r.ok(f"{name} exported")
        elif name in allow_missing or base_name(name) in allow_missing:
            r.warn(f"{name} NOT exported (allowed by --allow-missing)")
        else:
            missing.append(name)
            r.fail(f"{name} is used by the dashboard/alerts but not exported by {', '.join(urls)}")
    unused = sorted({base_name(s) for s in exported_samples if s.startswith("nebula_")} - {base_name(n) for n in refs})
    if unused:
        r.info(f"exported but on no panel or alert: {', '.join(unused)}")
    if missing:
        r.info("MISSING: " + " ".join(sorted({base_name(m) for m in missing})))


# ------------------------------------------------------------------------------------------


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repo", default=os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")),
                    help="repository root (default: the parent of scripts/)")
    ap.add_argument("--metrics-url", default="", help="comma-separated live /metrics URLs (server and notifier)")
    ap.add_argument("--allow-missing", default="", help="comma-separated metric names that may be absent from the live /metrics (reported as warnings)")
    ap.add_argument("--kubectl", action="store_true", help="also run kubectl apply --dry-run=client (needs a cluster in the kubeconfig)")
    args = ap.parse_args()

    root = os.path.abspath(args.repo)
    deploy = os.path.join(root, "deploy")
    if not os.path.isdir(deploy):
        print(f"validate-deploy: no deploy/ in {root}", file=sys.stderr)
        return 2
    r = Report()
    ws = Workspace(root)
    docs = load_all(deploy, root, r)

    composes: dict[str, tuple[Compose, dict]] = {}
    for path in sorted(glob.glob(os.path.join(deploy, "docker-compose*.yml"))):
        data = (docs.get(path) or [None])[0]
        if isinstance(data, dict):
            composes[os.path.basename(path)] = check_compose(path, data, root, ws, r)
    for name in EXPECTED_PORTS:
        if name not in composes:
            r.fail(f"deploy/{name} is missing")
    main_c, main_df = composes.get("docker-compose.yml", (None, {}))

    dockerfiles: dict[str, set[str]] = {os.path.join(deploy, "Dockerfile"): set()}
    for c, _ in composes.values():
        for svc in c.services.values():
            b = svc.get("build")
            if isinstance(b, dict):
                ctx = os.path.normpath(os.path.join(c.dir, b.get("context", ".")))
                dfp = os.path.normpath(os.path.join(ctx, b.get("dockerfile", "Dockerfile")))
                dockerfiles.setdefault(dfp, set())
                if b.get("target"):
                    dockerfiles[dfp].add(b["target"])
    for dfp, targets in dockerfiles.items():
        if os.path.isfile(dfp):
            check_dockerfile(dfp, root, root, ws, targets, r)
        else:
            r.section("Dockerfile")
            r.fail(f"{rel(dfp, root)} is missing")

    ping = 20
    env_example = os.path.join(root, ".env.example")
    if os.path.isfile(env_example):
        with open(env_example, encoding="utf-8") as f:
            m = re.search(r"^WS_PING_INTERVAL_SECONDS=(\d+)", f.read(), re.M)
            ping = int(m.group(1)) if m else ping
    check_nginx(os.path.join(deploy, "nginx.conf"), root, main_c, main_df, ping, r)
    alert_exprs = check_prometheus(deploy, root, docs, main_c, main_df, r)
    dash_exprs = check_grafana(deploy, root, docs, main_c, main_df, r)
    check_k8s(deploy, root, docs, args.kubectl, r)

    urls = [u.strip() for u in args.metrics_url.split(",") if u.strip()]
    allow = {a.strip() for a in args.allow_missing.split(",") if a.strip()}
    check_metrics(alert_exprs + dash_exprs, ws, urls, allow, r)

    print()
    if r.warnings:
        print(f"validate-deploy: {len(r.warnings)} warning(s):")
        for w in r.warnings:
            print(f"  - {w}")
    if r.failed:
        print(f"validate-deploy: {len(r.failed)} check(s) FAILED:")
        for f in r.failed:
            print(f"  - {f}")
    print(f"validate-deploy: {r.passed} checks ok, {len(r.failed)} failed, {len(r.warnings)} warnings")
    return 1 if r.failed else 0


if __name__ == "__main__":
    sys.exit(main())
