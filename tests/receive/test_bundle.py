"""The receive Lambda's bundle holds what its handler imports, and nothing of twilio.rest."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench.receive_bench import RECEIVE_DIR, build_bundle, isolated_python, runtime_site
from stacks.python_function import prune_bundle, source_hash

IMPORTED = """
import receive_lambda.handler
bundle = sys.path[0] + '/'
print(json.dumps(sorted({m.__file__[len(bundle):] for m in list(sys.modules.values())
                         if (getattr(m, '__file__', None) or '').startswith(bundle)})))
print(json.dumps('twilio.rest' in sys.modules))
"""


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_bundle(RECEIVE_DIR, tmp_path_factory.mktemp("receive-bundle"))


def test_handler_imports_from_the_bundle_alone_without_twilio_rest(
    bundle: Path, tmp_path: Path
) -> None:
    output = isolated_python(bundle, runtime_site(tmp_path / "runtime"), "import json\n" + IMPORTED)
    imported_lines = output.splitlines()
    imported = set(json.loads(imported_lines[0]))
    assert json.loads(imported_lines[1]) is False  # twilio.rest never loads
    files = {
        str(p.relative_to(bundle))
        for p in bundle.rglob("*.py")
        if ".dist-info" not in str(p) and "__pycache__" not in p.parts
    }
    # The function's package, the contract and the shared code it uses, at the bundle's root.
    assert {"receive_lambda/handler.py", "contract.py", "lambda_shared/logs.py"} <= files
    assert "lambda_shared/twilio_rest.py" not in files
    # twilio: exactly the two modules used.
    assert {f for f in files if f.startswith("twilio/")} == {
        "twilio/__init__.py",
        "twilio/request_validator.py",
    }
    # Every package in the bundle is imported: no whole library rides along unused.
    top_level = {f.split("/")[0] for f in files}
    assert top_level == {f.split("/")[0] for f in imported}
    # Most bundled modules are imported (the rest are modules of packages that are).
    assert len(imported & files) / len(files) > 0.6, sorted(files - imported)


def test_bundle_has_no_http_stack_of_the_twilio_client(bundle: Path) -> None:
    names = {p.name.split("-")[0].lower() for p in bundle.iterdir()}
    assert not names & {"aiohttp", "requests", "urllib3", "certifi", "jwt", "yarl", "bin"}


def test_prune_bundle_keeps_what_a_bang_pattern_names_again(tmp_path: Path) -> None:
    for name in ("pkg/__init__.py", "pkg/a.py", "pkg/sub/b.py", "pkg/sub/c.py", "other/d.py"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("")
    rules = tmp_path / "bundle-exclude.txt"
    rules.write_text("pkg/*  # everything in pkg\n!pkg/__init__.py\n!pkg/sub\npkg/sub/c.py\n")
    prune_bundle(tmp_path, rules)
    left = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*.py"))
    assert left == ["other/d.py", "pkg/__init__.py", "pkg/sub/b.py"]
    assert not (tmp_path / "pkg" / "sub" / "c.py").exists()


def test_the_asset_hash_changes_with_the_package_and_with_the_shared_sources(
    tmp_path: Path,
) -> None:
    package = tmp_path / "one_lambda"
    (package / "__pycache__").mkdir(parents=True)
    (package / "handler.py").write_text("X = 1\n")
    shared = tmp_path / "contract.py"
    shared.write_text("A = 1\n")
    before = source_hash(package, (shared,))
    (package / "__pycache__" / "handler.cpython-311.pyc").write_bytes(b"cache")
    assert source_hash(package, (shared,)) == before  # caches are not sources
    shared.write_text("A = 2\n")
    after_contract = source_hash(package, (shared,))
    assert after_contract != before
    (package / "requirements.txt").write_text("twilio==9.13.0\n")
    assert source_hash(package, (shared,)) != after_contract
