"""``deepemhancer --download``: fetch the official DeepEMhancer TF2 checkpoints (Zenodo record 7432763).

Needs internet. The zip is about 705 MiB and holds ``production_checkpoints/deepEMhancer_<kind>.hd5``, which
:mod:`deepemhancer.models.legacy` reads without executing the code stored in them.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import urllib.error
import urllib.request
import zipfile

from ..errors import InputError

OFFICIAL_URL = "https://zenodo.org/record/7432763/files/deepEMhancerModels_tf2.zip"


def download_official_models(destination: str, url: str = OFFICIAL_URL, timeout: float = 60.0) -> str:
    """Download and unpack the official checkpoints into ``destination``; returns the checkpoint folder."""
    os.makedirs(destination, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=destination) as tmp:
        archive = os.path.join(tmp, "models.zip")
        try:
            with urllib.request.urlopen(url, timeout=timeout) as response, open(archive, "wb") as out:
                shutil.copyfileobj(response, out, length=1 << 20)
        except (urllib.error.URLError, OSError) as exc:
            raise InputError(f"cannot download {url}: {exc}. This needs internet access; on an offline machine "
                             f"copy deepEMhancerModels_tf2.zip here by other means and unzip it into "
                             f"{destination}, or use the models shipped with this package.") from exc
        try:
            with zipfile.ZipFile(archive) as z:
                z.extractall(destination)
        except zipfile.BadZipFile as exc:
            raise InputError(f"the download from {url} is not a valid zip ({exc}); retry.") from exc
    folder = os.path.join(destination, "production_checkpoints")
    return folder if os.path.isdir(folder) else destination
