#!/usr/bin/env bash
# Install LocScale 2 (PyPI `locscale` 2.3.1.post5) into a separate virtual
# environment, set up for CPU-only machines with no REFMAC5, to use as an
# optional benchmark baseline.
#
# Usage:  bash benchmarks/install_locscale.sh [VENV_DIR]
#         VENV_DIR defaults to <repo>/work-data/locscale-venv (work-data/ is git-ignored).
#
# What it does and why:
#   1. gfortran (Debian package): the locscale sdist compiles a Fortran extension
#      (fcodes_fast, for symmetry averaging) through numpy.distutils.
#   2. A fresh venv (python3, which must be 3.11: TF 2.15 has no wheels for 3.12+).
#      It never touches the project's own .venv or .scipion.
#   3. The dependencies from locscale's setup.cfg, installed by hand, because that
#      file pins `tensorflow[and-cuda]==2.15.0.post1` (several GB of CUDA wheels).
#      We take `tensorflow-cpu==2.15.1` instead. The pins follow setup.cfg
#      (numpy<=1.26 means 1.26.0, scikit-learn==1.6 means 1.6.0, scipy<=1.15 means 1.15.0).
#      pandas<3 and tensorflow-datasets 4.9.4 (the TF 2.15 era release) are
#      our choices, for safety.
#   4. locscale itself with --no-deps (so pip does not pull the CUDA build) and
#      --no-build-isolation, building against the build requirements from its
#      pyproject.toml (setuptools==61.3.0, wheel==0.37.1, numpy<=1.26), which we
#      install into the venv first. Newer setuptools no longer work with numpy.distutils.
#   5. A small patch to the installed locscale (idempotent, checked by a marker):
#      locscale.preprocessing.headers.run_refmac_servalcat() calls
#      `servalcat refine_spa` (a REFMAC5 wrapper) and first fails hard in
#      check_for_refmac(). We make it call servalcat's own refinement engine
#      instead: `python -m servalcat refine_spa_norefmac --fix_xyz --adp iso`
#      (B-factor-only refinement, like REFMAC's "refi bonly"). The function still
#      returns the path of <prefix>.mmcif, as before. A second one-line fix in
#      locscale/include/emmer/ndimage/filter.py makes -mres work with numpy >= 1.24.
#   6. A quick check: the imports and the compiled extension.
#
# Notes on use (see the final message):
#   * Model-free mode needs `--build_using_pseudomodel`. Without it, LocScale 2.3
#     predicts a model map with EMmerNet, whose weights it downloads from zenodo
#     at run time; that does not work offline.
#   * `--complete_model` only applies with an atomic model (-mc). Model-free mode
#     rejects it.
#   * LocScale is known to rewrite half map 1 and drop the origin: always give it
#     copies (2.3.1.post5 worked on its own copies in processing_files/ in our test,
#     but do not rely on that). Its output has origin 0.
#   * Without $CLIBD_MON (CCP4 monomer library) servalcat can only do unrestrained
#     refinement. The patch then adds --unrestrained, which for pseudo-atomic
#     models is what LocScale asked REFMAC for anyway ("refi type unre").
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "$SCRIPT_DIR/.." && pwd)"
VENV="${1:-$REPO_ROOT/work-data/locscale-venv}"
VENV="$(mkdir -p "$(dirname "$VENV")" && cd "$(dirname "$VENV")" && pwd)/$(basename "$VENV")"
PYTHON="${PYTHON:-python3}"
LOCSCALE_VERSION="2.3.1.post5"

# Be gentle on a small shared machine: lowest priority, single-threaded math.
NICE=(nice -n 19)
export OMP_NUM_THREADS=1 TF_NUM_INTRAOP_THREADS=1 TF_NUM_INTEROP_THREADS=1
export TF_CPP_MIN_LOG_LEVEL="${TF_CPP_MIN_LOG_LEVEL:-2}"

log() { printf '\n==> %s\n' "$*"; }

# --- 1. Fortran compiler -----------------------------------------------------
if ! command -v gfortran >/dev/null 2>&1; then
    log "Installing gfortran (needed to build locscale's Fortran extension)"
    SUDO=""
    if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO "${NICE[@]}" apt-get install -y -qq gfortran
fi

# --- 2. Virtual environment --------------------------------------------------
if ! "$PYTHON" -c 'import sys; sys.exit(0 if sys.version_info[:2] == (3, 11) else 1)'; then
    echo "ERROR: $PYTHON is $("$PYTHON" -V 2>&1); TensorFlow 2.15 needs Python 3.11 (or 3.9/3.10)." >&2
    echo "       Set PYTHON=/path/to/python3.11." >&2
    exit 1
fi
if [ ! -x "$VENV/bin/python" ]; then
    log "Creating venv at $VENV"
    "${NICE[@]}" "$PYTHON" -m venv "$VENV"
fi
VPY="$VENV/bin/python"
PIP=("${NICE[@]}" "$VPY" -m pip)

# --- 3. Build requirements and runtime dependencies (CPU TensorFlow) ----------
log "Installing build requirements and dependencies (CPU TensorFlow)"
# pip will say "locscale ... requires tensorflow[and-cuda]==2.15.0.post1, which is not
# installed" once locscale is in: expected, tensorflow-cpu provides the same module.
"${PIP[@]}" install -q \
    "setuptools==61.3.0" "wheel==0.37.1" "numpy==1.26.0" \
    "scipy>=1.5,<=1.15" "pandas>=1.1.5,<3" "scikit-learn==1.6.0" \
    "matplotlib>=3.3.4" "seaborn>=0.11" "biopython>=1.78" "gemmi==0.7.*" \
    "mrcfile>=1.3.0" "pypdb==2.0" \
    "tensorflow-cpu==2.15.1" "tensorflow-addons>=0.19" "tensorflow-datasets==4.9.4" \
    "more_itertools>=8.10.0" "servalcat==0.4.*" "pwlf>=2.0.4" "tqdm>=4.62.3" \
    "pyfiglet>=0.8.post1" "wget>=3.2" loguru

# --- 4. locscale itself, without its CUDA dependency ------------------------
installed="$("$VPY" -c 'import importlib.metadata as m; print(m.version("locscale"))' 2>/dev/null || true)"
if [ "$installed" != "$LOCSCALE_VERSION" ]; then
    log "Building and installing locscale $LOCSCALE_VERSION (--no-deps --no-build-isolation)"
    "${PIP[@]}" install --no-deps --no-build-isolation "locscale==$LOCSCALE_VERSION"
else
    log "locscale $LOCSCALE_VERSION already installed"
fi

# --- 5. Patch: REFMAC5-free B-factor refinement -------------------------------
log "Patching locscale to refine B-factors with servalcat refine_spa_norefmac"
"$VPY" - <<'PYEOF'
import pathlib, shutil, sys
import importlib.util

spec = importlib.util.find_spec("locscale")
headers = pathlib.Path(spec.submodule_search_locations[0]) / "preprocessing" / "headers.py"
src = headers.read_text()
MARKER = "# LOCSCALE_NOREFMAC_PATCH"

# (c) Upstream bug with numpy >= 1.24 (locscale allows up to 1.26): -mres/--model_resolution
#     crashes in include/emmer/ndimage/filter.py:calculate_fourier_frequencies(), where
#     np.sum([...]) of differently shaped (sparse meshgrid) arrays raises
#     "ValueError: setting an array element with a sequence ... inhomogeneous shape".
#     Python's sum() broadcasts them, as was meant.
filt = headers.parent.parent / "include" / "emmer" / "ndimage" / "filter.py"
fsrc = filt.read_text()
f_old = "    fourier_frequencies = np.sqrt(np.sum([dim**2 for dim in dims]))\n"
f_new = "    fourier_frequencies = np.sqrt(sum(dim**2 for dim in dims))  " + MARKER + "\n"
if MARKER in fsrc:
    print(f"already patched: {filt}")
elif f_old in fsrc:
    if not filt.with_name("filter.py.orig").exists():
        shutil.copy2(filt, filt.with_name("filter.py.orig"))
    filt.write_text(fsrc.replace(f_old, f_new))
    print(f"patched: {filt}")
else:
    sys.exit(f"ERROR: unexpected content in {filt}; patch not applied")

if MARKER in src:
    print(f"already patched: {headers}")
    sys.exit(0)

# (a) check_for_refmac(tolerate=False) raises when refmac5 is not on PATH.
old_check = "    # check for refmac5\n    check_for_refmac(tolerate=False)\n"
new_check = "    " + MARKER + ": no REFMAC5 check, servalcat refine_spa_norefmac needs none\n"

# (b) The servalcat/REFMAC command, from its construction to the return code.
start_key = '    servalcat_command = ["servalcat","refine_spa","--model",servalcat_input,'
end_key = '    rcode = run_command_with_filtered_output(servalcat_command, servalcat_logger, filter_string="FSCaverage=") \n'
new_block = '''    ''' + MARKER + ''': servalcat's own refinement engine instead of REFMAC5.
    # B-factors only (--fix_xyz, isotropic ADPs), like REFMAC "refi bonly".
    import sys as _sys
    import subprocess as _subprocess
    servalcat_command = [_sys.executable, "-m", "servalcat", "refine_spa_norefmac",
        "--model", servalcat_input,
        "--resolution", str(round(resolution, 2)), "--ncycle", str(int(num_iter)),
        "--output_prefix", output_prefix,
        "--fix_xyz", "--adp", "iso", "--hydrogen", "no"]

    ## Add the map path to the command if there is only one map ##
    if type(map_path) == str:
        servalcat_command.extend(["--map", map_path])
    else:
        assert len(map_path) == 2, "The map_path should be a string or a list of two strings"
        servalcat_command.extend(["--halfmaps", map_path[0], map_path[1]])

    if cif_info is not None:
        servalcat_command += ["--ligand", cif_info]
    use_unrestrained_refinement = pseudomodel_refinement and not hybrid_model_refinement
    # Restrained ADP refinement needs the CCP4 monomer library; without it, go unrestrained.
    have_monlib = bool(os.environ.get("CLIBD_MON"))
    if use_unrestrained_refinement or not have_monlib:
        servalcat_command += ["--unrestrained"]
    if use_unrestrained_refinement:
        servalcat_command += ["--no_mask"]

    print("Running command: {}".format(" ".join(servalcat_command)))
    _process = _subprocess.Popen(servalcat_command, stdout=_subprocess.PIPE, stderr=_subprocess.STDOUT,
                                 text=True, bufsize=1)
    for _line in _process.stdout:
        _line = _line.rstrip()
        servalcat_logger.info(_line)
        if "FSCaverage" in _line or "Error" in _line:
            print(_line)
    rcode = _process.wait()
'''

if old_check not in src or src.count(start_key) != 1 or src.count(end_key) != 1:
    sys.exit(f"ERROR: {headers} does not look like locscale 2.3.1.post5; patch not applied")
i0 = src.index(start_key)
i1 = src.index(end_key, i0) + len(end_key)
patched = src[:i0] + new_block + src[i1:]
patched = patched.replace(old_check, new_check, 1)
compile(patched, str(headers), "exec")          # never leave a broken module behind
backup = headers.with_name("headers.py.orig")
if not backup.exists():
    shutil.copy2(headers, backup)
headers.write_text(patched)
for pyc in headers.parent.glob("__pycache__/headers.*.pyc"):
    pyc.unlink()
print(f"patched: {headers} (original kept as {backup.name})")
PYEOF

# --- 6. Quick check -------------------------------------------------------
log "Checking the installation"
"${NICE[@]}" "$VPY" - <<'PYEOF'
import importlib.metadata as md
import fcodes_fast, gemmi, servalcat, tensorflow as tf
import locscale.preprocessing.headers as h, inspect
assert "refine_spa_norefmac" in inspect.getsource(h.run_refmac_servalcat)
print("locscale", md.version("locscale"), "| tensorflow", tf.__version__,
      "| servalcat", md.version("servalcat"), "| gemmi", gemmi.__version__)
PYEOF
"${NICE[@]}" "$VENV/bin/locscale" --help >/dev/null

cat <<EOF

LocScale $LOCSCALE_VERSION is installed in $VENV.
Put it on PATH (this shell only), after the engine's environment so that \`python\` stays the engine's
(benchmarks/benchmark_quality.py --locscale finds the \`locscale\` command there):
    export PATH="\$PATH:$VENV/bin"
or call it directly: $VENV/bin/locscale
Model-free run (on copies of the half maps: LocScale may rewrite half map 1):
    OMP_NUM_THREADS=1 TF_NUM_INTRAOP_THREADS=1 TF_NUM_INTEROP_THREADS=1 \\
    nice -n 19 locscale --halfmap_paths half1.mrc half2.mrc -o locscale_output.mrc \\
        -mres 3.4 --build_using_pseudomodel -np 1
EOF
