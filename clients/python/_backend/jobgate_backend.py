"""jobgate_backend — the PEP 517 build backend of the jobgate client.

A wheel is a zip file with a fixed layout (PEP 427, PEP 376 RECORD); this
writes it with the standard library so that `pip install ./clients/python`
works with no package index: pip's isolated build environment then needs
nothing it would have to download (setuptools is not in a fresh venv on
Debian 12). It reads its name, version, dependencies and console scripts
from pyproject.toml (tomllib on 3.11, a small reader of the few lines used
here before that) and packs every file of the jobgate/ package.
"""
import ast
import base64
import hashlib
import io
import os
import re
import tarfile
import zipfile

HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGE = "jobgate"


def _project():
    """The [project] table of pyproject.toml."""
    with open(os.path.join(HERE, "pyproject.toml"), "rb") as f:
        data = f.read()
    try:
        import tomllib
    except ImportError:  # Python < 3.11: the simple key = value lines we write
        tomllib = None
    if tomllib is not None:
        return tomllib.loads(data.decode())["project"]
    project, table = {}, None
    for line in data.decode().splitlines():
        line = line.split("#", 1)[0].strip()
        if line.startswith("["):
            table = line.strip("[]")
            continue
        if "=" not in line or table not in ("project", "project.scripts"):
            continue
        key, value = (part.strip() for part in line.split("=", 1))
        value = ast.literal_eval(value)  # strings and lists of strings only
        if table == "project":
            project[key] = value
        else:
            project.setdefault("scripts", {})[key.strip('"')] = value
    return project


def _metadata(project):
    lines = ["Metadata-Version: 2.1", "Name: " + project["name"], "Version: " + project["version"],
             "Summary: " + project.get("description", "")]
    if "requires-python" in project:
        lines.append("Requires-Python: " + project["requires-python"])
    for requirement in project.get("dependencies", []):
        lines.append("Requires-Dist: " + requirement)
    return "\n".join(lines) + "\n"


def _dist_info(project):
    name = re.sub(r"[-_.]+", "_", project["name"])
    return "%s-%s.dist-info" % (name, project["version"])


def _dist_info_files(project):
    scripts = project.get("scripts", {})
    entry_points = "[console_scripts]\n" + "".join("%s = %s\n" % item for item in scripts.items())
    return {
        "METADATA": _metadata(project),
        "WHEEL": "Wheel-Version: 1.0\nGenerator: jobgate_backend\nRoot-Is-Purelib: true\n"
                 "Tag: py3-none-any\n",
        "entry_points.txt": entry_points,
        "top_level.txt": PACKAGE + "\n",
    }


def _package_files():
    root = os.path.join(HERE, PACKAGE)
    for directory, subdirs, files in os.walk(root):
        subdirs[:] = sorted(d for d in subdirs if d != "__pycache__")
        for name in sorted(files):
            if name.endswith((".pyc", ".pyo")):
                continue
            path = os.path.join(directory, name)
            yield os.path.relpath(path, HERE).replace(os.sep, "/"), path


def _record_line(name, data):
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return "%s,sha256=%s,%d" % (name, digest, len(data))


def get_requires_for_build_wheel(config_settings=None):
    return []


def get_requires_for_build_sdist(config_settings=None):
    return []


def prepare_metadata_for_build_wheel(metadata_directory, config_settings=None):
    project = _project()
    dist_info = os.path.join(metadata_directory, _dist_info(project))
    os.makedirs(dist_info, exist_ok=True)
    for name, text in _dist_info_files(project).items():
        with open(os.path.join(dist_info, name), "w") as f:
            f.write(text)
    return os.path.basename(dist_info)


def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
    project = _project()
    wheel_name = "%s-%s-py3-none-any.whl" % (re.sub(r"[-_.]+", "_", project["name"]),
                                            project["version"])
    dist_info = _dist_info(project)
    record = []
    with zipfile.ZipFile(os.path.join(wheel_directory, wheel_name), "w",
                         zipfile.ZIP_DEFLATED) as wheel:
        for name, path in _package_files():
            with open(path, "rb") as f:
                data = f.read()
            wheel.writestr(name, data)
            record.append(_record_line(name, data))
        for name, text in _dist_info_files(project).items():
            data = text.encode()
            wheel.writestr(dist_info + "/" + name, data)
            record.append(_record_line(dist_info + "/" + name, data))
        record.append(dist_info + "/RECORD,,")
        wheel.writestr(dist_info + "/RECORD", "\n".join(record) + "\n")
    return wheel_name


def build_sdist(sdist_directory, config_settings=None):
    project = _project()
    base = "%s-%s" % (project["name"], project["version"])
    name = base + ".tar.gz"
    with tarfile.open(os.path.join(sdist_directory, name), "w:gz") as tar:
        for relative in ("pyproject.toml", "README.md", "_backend/jobgate_backend.py"):
            path = os.path.join(HERE, relative)
            if os.path.exists(path):
                tar.add(path, base + "/" + relative)
        for relative, path in _package_files():
            tar.add(path, base + "/" + relative)
        info = tarfile.TarInfo(base + "/PKG-INFO")
        data = _metadata(project).encode()
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    return name
