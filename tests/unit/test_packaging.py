"""The files that put newswatch on a server: Dockerfile, .dockerignore, compose.yaml, systemd unit.

Docker is not needed: the Dockerfile is parsed and checked (non-root, volumes, health check,
exec-form entry point, every COPY source present and not ignored), and its config rewrite is
replayed on the shipped config, which must still load. `docker build` runs only where a
Docker daemon answers. The systemd unit is checked for its required keys, and verified with
`systemd-analyze verify` where that exists.
"""

from __future__ import annotations

import fnmatch
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from newswatch.alerts.config import parse_config

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"
UNIT = ROOT / "deploy" / "newswatch.service"


# -- Dockerfile -------------------------------------------------------------------------------------
def dockerfile_instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    out: list[tuple[str, str]] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if pending and line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line = pending + line
        pending = ""
        instruction, _, args = line.partition(" ")
        out.append((instruction.upper(), args.strip()))
    assert not pending, "the Dockerfile ends in a line continuation"
    return out


def final_stage(instructions: list[tuple[str, str]]) -> list[tuple[str, str]]:
    starts = [i for i, (ins, _) in enumerate(instructions) if ins == "FROM"]
    return instructions[starts[-1]:]


def dockerignored(path: str, patterns: list[str]) -> bool:
    """Docker's rule: the last pattern that matches the path or one of its parents decides."""
    ignored = False
    parts = path.split("/")
    candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    for pattern in patterns:
        negate = pattern.startswith("!")
        body = pattern[1:] if negate else pattern
        body = body.rstrip("/")
        if body.startswith("**/"):
            hit = any(fnmatch.fnmatch(c.split("/")[-1], body[3:]) for c in candidates)
        else:
            hit = any(fnmatch.fnmatch(c, body) for c in candidates)
        if hit:
            ignored = not negate
    return ignored


def dockerignore_patterns() -> list[str]:
    lines = (ROOT / ".dockerignore").read_text().splitlines()
    return [l.strip() for l in lines if l.strip() and not l.strip().startswith("#")]


def test_dockerfile_is_small_non_root_and_uses_volumes() -> None:
    instructions = dockerfile_instructions(DOCKERFILE.read_text())
    names = [i for i, _ in instructions]
    assert names.count("FROM") == 2, "a build stage and a runtime stage"
    args = dict(a.split("=", 1) for i, a in instructions if i == "ARG" and "=" in a)
    requires = re.search(r'requires-python\s*=\s*">=(\d+\.\d+)"', (ROOT / "pyproject.toml").read_text()).group(1)
    assert args["PYTHON_VERSION"] == requires
    for ins, arg in instructions:
        if ins == "FROM":
            assert arg.split()[0] == "python:${PYTHON_VERSION}-slim", arg
        assert ins != "ADD", "COPY, never ADD (no URLs, no archives unpacked)"
    final = final_stage(instructions)
    users = [a for i, a in final if i == "USER"]
    assert users and users[-1] not in ("root", "0"), "the runtime stage runs as an unprivileged user"
    user_at = max(k for k, (i, _) in enumerate(final) if i == "USER")
    assert all(i not in ("RUN",) for i, _ in final[user_at:]), "nothing runs as root after USER"
    volumes = json.loads(next(a for i, a in final if i == "VOLUME"))
    assert set(volumes) == {"/config", "/data"}
    assert next(a for i, a in final if i == "EXPOSE") == "9108"
    health = next(a for i, a in final if i == "HEALTHCHECK")
    assert "/healthz" in health and "--timeout=" in health
    for ins in ("ENTRYPOINT", "CMD"):
        value = json.loads(next(a for i, a in final if i == ins))  # exec form, so signals reach newswatch
        assert isinstance(value, list) and value
    assert json.loads(next(a for i, a in final if i == "ENTRYPOINT")) == ["newswatch"]
    assert json.loads(next(a for i, a in final if i == "CMD"))[0] == "run"
    env = " ".join(a for i, a in final if i == "ENV")
    assert "NEWSWATCH_CONFIG=/config/newswatch.yaml" in env
    assert not any("NEWSWATCH_TELEGRAM_TOKEN" in a for i, a in instructions if i in ("ENV", "ARG")), \
        "no token baked into the image"


def test_every_copied_file_exists_and_is_in_the_build_context() -> None:
    patterns = dockerignore_patterns()
    for ins, arg in dockerfile_instructions(DOCKERFILE.read_text()):
        if ins != "COPY" or arg.startswith("--from="):
            continue
        *sources, _ = arg.split()
        for source in sources:
            path = ROOT / source
            assert path.exists(), f"COPY {source}: no such file"
            if path.is_file():
                assert not dockerignored(source, patterns), f"COPY {source}: excluded by .dockerignore"
                continue
            sent = [f for f in path.rglob("*") if f.is_file() and not dockerignored(f.relative_to(ROOT).as_posix(), patterns)]
            assert sent, f"COPY {source}: everything in it is excluded by .dockerignore"
            for file in [*path.rglob("*.py"), *path.glob("*.yaml")]:
                rel = file.relative_to(ROOT).as_posix()
                assert not dockerignored(rel, patterns), f"{rel} is needed in the image but excluded"
    for private in ("config/newswatch.db", "tests/e2e/conftest.py", ".git/HEAD", "alerts/__pycache__/cli.cpython-311.pyc"):
        assert dockerignored(private, patterns), f"{private} would be sent to the Docker daemon"


def test_the_image_config_rewrite_gives_a_valid_config() -> None:
    """Replay the RUN that turns the shipped config into the image's: database in /data, HTTP on 0.0.0.0."""
    run = next(a for i, a in final_stage(dockerfile_instructions(DOCKERFILE.read_text()))
               if i == "RUN" and "sed -i" in a)
    pattern, replacement = re.search(r"sed -i 's\|(.+?)\|(.+?)\|'", run).groups()
    appended = re.search(r"printf '(.+?)' >>", run).group(1).encode().decode("unicode_escape")
    shipped = (ROOT / "config" / "newswatch.yaml").read_text("utf-8")
    rewritten, count = re.subn(pattern, replacement, shipped, flags=re.M)
    assert count == 1, "the shipped config's storage.path line changed; update the Dockerfile's sed"
    config = parse_config(rewritten + appended, "/config/newswatch.yaml", base_dir=Path("/config"))
    assert config.database_path == Path("/data/newswatch.db")
    assert config.http is not None and config.http.listen == "0.0.0.0:9108"


@pytest.mark.skipif(shutil.which("docker") is None, reason="docker is not installed")
def test_docker_build() -> None:
    if subprocess.run(["docker", "info"], capture_output=True, timeout=20).returncode != 0:
        pytest.skip("no Docker daemon answers here; build with: docker build -t newswatch .")
    proc = subprocess.run(["docker", "build", "-q", "-t", "newswatch:test", str(ROOT)],
                          capture_output=True, text=True, timeout=1800)
    assert proc.returncode == 0, proc.stderr[-3000:]


# -- compose -----------------------------------------------------------------------------------------
def test_compose_example() -> None:
    compose = yaml.safe_load((ROOT / "deploy" / "compose.yaml").read_text())
    service = compose["services"]["newswatch"]
    context = (ROOT / "deploy" / service["build"]["context"]).resolve()
    assert (context / service["build"].get("dockerfile", "Dockerfile")).resolve() == DOCKERFILE
    mounts = {v.split(":")[1] for v in service["volumes"]}
    assert mounts == {"/config", "/data"}
    assert all(p.startswith("127.0.0.1:") for p in service["ports"]), "the endpoint stays off public interfaces"
    token_file = service["environment"]["NEWSWATCH_TELEGRAM_TOKEN_FILE"]
    assert token_file == f"/run/secrets/{service['secrets'][0]}"
    assert service["secrets"][0] in compose["secrets"]
    assert "NEWSWATCH_TELEGRAM_TOKEN" not in service["environment"]
    assert service["restart"] == "unless-stopped"


def test_scaled_compose_runs_the_roles_on_postgresql() -> None:
    """deploy/compose.scale.yaml: PostgreSQL, workers, and a dispatcher and a bot each with a
    standby, from the image the Dockerfile builds, which must carry the PostgreSQL driver."""
    from newswatch.cli import build_parser

    compose = yaml.safe_load((ROOT / "deploy" / "compose.scale.yaml").read_text())
    services = compose["services"]
    roles = {name: s["command"] for name, s in services.items() if name != "postgres"}
    assert sorted(c[0] for c in roles.values()) == ["bot", "bot", "dispatch", "dispatch", "worker"]
    for name, command in roles.items():
        assert build_parser().parse_args(command).command == command[0], name
        assert services[name]["depends_on"]["postgres"]["condition"] == "service_healthy"
        assert services[name]["image"] == services["worker"]["image"]
    assert services["postgres"]["image"].startswith("postgres:")
    install = [line for line in DOCKERFILE.read_text().splitlines() if "pip install" in line]
    assert any("newswatch[postgres]" in line for line in install), install


# -- systemd ------------------------------------------------------------------------------------------
def unit_sections(text: str) -> dict[str, dict[str, list[str]]]:
    sections: dict[str, dict[str, list[str]]] = {}
    current = None
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], {})
            continue
        assert current is not None, f"a key outside any section: {line}"
        key, sep, value = line.partition("=")
        assert sep, f"not KEY=VALUE: {line}"
        current.setdefault(key.strip(), []).append(value.strip())
    return sections


def test_systemd_unit_has_what_a_service_needs() -> None:
    unit = unit_sections(UNIT.read_text())
    assert unit["Unit"]["Description"]
    assert "network-online.target" in unit["Unit"]["After"][0] and "network-online.target" in unit["Unit"]["Wants"][0]
    service = unit["Service"]
    exec_start = service["ExecStart"][0].split()
    assert exec_start[0].startswith("/") and exec_start[0].endswith("/newswatch")
    assert exec_start[1] == "run" and "--log-format" in exec_start and "json" in exec_start
    assert service["User"][0] not in ("root", "0")
    assert service["Restart"][0] in ("on-failure", "always")
    assert service["RestartPreventExitStatus"] == ["2"]  # a config error does not restart in a loop
    assert service["StateDirectory"] == ["newswatch"]
    assert service["NoNewPrivileges"] == ["yes"] and service["ProtectSystem"] == ["strict"]
    assert any(v.startswith("telegram-token:") for v in service["LoadCredential"])
    assert "NEWSWATCH_TELEGRAM_TOKEN_FILE=%d/telegram-token" in service["Environment"]
    assert not any(v.startswith("NEWSWATCH_TELEGRAM_TOKEN=") for v in service["Environment"]), "no token in the unit"
    assert unit["Install"]["WantedBy"] == ["multi-user.target"]


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed")
def test_systemd_analyze_verify(tmp_path: Path) -> None:
    # The unit's binary is installed on the server, not here: verify a copy pointing at one that exists.
    text = UNIT.read_text()
    binary = UNIT_BINARY.search(text).group(1)
    copy = tmp_path / "newswatch.service"
    copy.write_text(text.replace(binary, sys.executable))
    proc = subprocess.run(["systemd-analyze", "verify", str(copy)], capture_output=True, text=True, timeout=60)
    complaints = [l for l in (proc.stdout + proc.stderr).splitlines() if l.startswith("newswatch.service")]
    assert proc.returncode == 0 and not complaints, proc.stdout + proc.stderr


UNIT_BINARY = re.compile(r"^ExecStart=(\S+)", re.M)


# -- what the docs have users do ----------------------------------------------------------------------
def test_compose_config_is_edited_on_the_host_and_mounted_read_only() -> None:
    text = (ROOT / "deploy" / "compose.yaml").read_text()
    header = "\n".join(line for line in text.splitlines() if line.startswith("#"))
    assert not re.search(r"\b(vi|vim|nano)\b", header), "the image has no editor"
    service = yaml.safe_load(text)["services"]["newswatch"]
    config_mount = next(v for v in service["volumes"] if v.split(":")[1] == "/config")
    source, _, mode = config_mount.split(":")
    assert source == "./config" and mode == "ro", "a host folder, read-only"
    copied = re.search(r"> (deploy/config/newswatch\.yaml)", header)
    assert copied, "the header says how to get the image's config onto the host"
    assert (ROOT / "deploy" / source).resolve() / "newswatch.yaml" == (ROOT / copied.group(1)).resolve()


def test_files_the_docs_have_users_create_are_ignored_by_git() -> None:
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    for path in ("deploy/telegram_token", "deploy/config/newswatch.yaml"):
        proc = subprocess.run(["git", "-C", str(ROOT), "check-ignore", "-q", path], check=False)
        assert proc.returncode == 0, f"{path} is not ignored by git"


def test_readme_systemd_section_adds_the_http_section_before_calling_healthz() -> None:
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("### systemd"):]
    section = section[: section.index("\n## ")]
    healthz = section.index("localhost:9108/healthz")
    assert re.search(r"http:\n\s+listen: \"127\.0\.0\.1:9108\"", section[:healthz])
    unit_header = UNIT.read_text().split("[Unit]")[0]
    if "healthz" in unit_header:
        assert unit_header.index("http:") < unit_header.index("healthz")


# -- the installed package ------------------------------------------------------------------------------
def declared_packages() -> tuple[list[str], dict[str, str]]:
    import tomllib

    setup = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    return setup["packages"], setup["package-dir"]


def test_every_folder_of_code_is_an_installed_package() -> None:
    """A folder of modules left out of `packages` would be missing from an installed wheel while
    every test run from the checkout still passes."""
    packages, folders = declared_packages()
    assert all(name == "newswatch" or name.startswith("newswatch.") for name in packages)
    found = set()
    for top, name in (("newswatch", "newswatch"), *((folder, name) for name, folder in folders.items())):
        for init in (ROOT / top).rglob("*.py"):
            parts = init.parent.relative_to(ROOT / top).parts
            found.add(".".join((name, *parts)))
    assert "newswatch.crawler.parse" in found and "newswatch.config" in packages
    assert found - {"newswatch.config"} <= set(packages), sorted(found - set(packages))


def test_the_wheel_installs_one_import_name(tmp_path: Path) -> None:
    """Built and installed, the project adds `newswatch` only (its parts under it, the shipped
    YAML as package data), and the installed command finds the shipped config from any folder."""
    pytest.importorskip("wheel", reason="building a wheel needs the `wheel` package (pip install wheel)")
    source = tmp_path / "source"  # a copy: setuptools builds inside the source folder
    source.mkdir()
    for part in ("pyproject.toml", "README.md", "newswatch", "crawler", "alerts", "config"):
        copy = shutil.copytree if (ROOT / part).is_dir() else shutil.copy
        copy(ROOT / part, source / part, **({"ignore": shutil.ignore_patterns("__pycache__", "*.db*")}
                                           if (ROOT / part).is_dir() else {}))
    build = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
                            str(source), "-w", str(tmp_path / "dist")], capture_output=True, text=True, timeout=300)
    assert build.returncode == 0, build.stderr[-2000:]
    import zipfile

    (wheel,) = (tmp_path / "dist").glob("newswatch-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert {name.split("/")[0] for name in names} == {"newswatch", wheel.name.split("-py")[0] + ".dist-info"}
    assert "newswatch/config/newswatch.yaml" in names
    assert "newswatch/crawler/parse/feeds.py" in names and "newswatch/alerts/match/matcher.py" in names
    target = tmp_path / "site"
    install = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(target),
                              str(wheel)], capture_output=True, text=True, timeout=300)
    assert install.returncode == 0, install.stderr[-2000:]
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": os.pathsep.join([str(target), *sys.path[1:]])}
    env["PYTHONPATH"] = os.pathsep.join(p for p in env["PYTHONPATH"].split(os.pathsep) if Path(p) != ROOT)
    proc = subprocess.run([sys.executable, "-c", "import newswatch.crawler.story as s, newswatch.cli as c;"
                           "print(s.__file__); c.main(['check-config'])"],
                          capture_output=True, text=True, cwd=tmp_path, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.startswith(str(target / "newswatch" / "crawler" / "story.py"))
    assert "# <built-in newswatch.yaml>: OK (" in proc.stdout
