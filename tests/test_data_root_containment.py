"""Image ids never read a file outside the data root: refused in every loader's CSV (naming the row) and, whatever a
loader (or plugin) makes of its ids, by the shared contract `BenchmarkData`."""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from cxrbench.cli import app
from cxrbench.data.candid.synthetic import write_synthetic_candid
from cxrbench.data.common.samples import BenchmarkData
from cxrbench.data.padchest.synthetic import write_synthetic_padchest
from cxrbench.data.rsna.synthetic import write_synthetic_rsna
from cxrbench.errors import DataError

runner = CliRunner()
ESCAPE = "../../../outside/secret"


def _plant_secret(root: Path, relative_to: Path) -> None:
    """The file the crafted id points at, so that only the check can stop it being read."""
    target = (relative_to / (ESCAPE + ".dicom")).resolve()
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(next((root / "test").glob("*.dicom")), target)


def test_vindr_id_climbing_out_of_the_root_is_refused_naming_the_row(vindr_copy):
    """The fault as found: this id read a file outside --data-root, was scored, and `data check` said ok."""
    path = vindr_copy / "annotations/image_labels_test.csv"
    frame = pd.read_csv(path, dtype={"image_id": str})
    frame.loc[3, "image_id"] = ESCAPE
    frame.to_csv(path, index=False)
    _plant_secret(vindr_copy, vindr_copy / "test")
    result = runner.invoke(app, ["data", "check", "vindr", "--data-root", str(vindr_copy)])
    assert result.exit_code == 2
    message = " ".join(result.output.split())
    assert f"{path}, row 5" in message and "column 'image_id'" in message and "not a plain file name" in message


@pytest.mark.parametrize("layout", ["candid-ptx", "rsna-pneumonia", "padchest-lateral"])
def test_every_loader_refuses_path_ids(layout, tmp_path):
    writers = {"candid-ptx": (write_synthetic_candid, "Pneumothorax_reports.csv", "SOPInstanceUID"),
               "rsna-pneumonia": (write_synthetic_rsna, "stage_2_train_labels.csv", "patientId"),
               "padchest-lateral": (write_synthetic_padchest, "PADCHEST_chest_x_ray_images_labels_160K_01.02.19.csv", "ImageID")}
    write, csv_name, column = writers[layout]
    root = write(tmp_path / layout)
    path = root / csv_name
    frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    frame.loc[0, column] = "..\\..\\outside"
    frame.to_csv(path, index=False)
    result = runner.invoke(app, ["data", "check", layout, "--data-root", str(root)])
    assert result.exit_code == 2, result.output
    message = " ".join(result.output.split())
    assert f"{path}, row 2" in message and f"column '{column}'" in message


def _frame(paths: list[str]) -> pd.DataFrame:
    return pd.DataFrame({"image_id": [f"i{n}" for n in range(len(paths))], "patient_id": "p", "path": paths,
                         "split": "test", "Task": 1.0})


def test_the_shared_contract_refuses_any_path_outside_the_root(tmp_path):
    root = tmp_path / "data"
    (root / "images").mkdir(parents=True)
    inside = str(root / "images/a.png")
    with pytest.raises(DataError, match="Image 'i1' of plugin points at .*outside the data root"):
        BenchmarkData("plugin", root, ("Task",), _frame([inside, str(root / "images/../../elsewhere/b.png")]))
    with pytest.raises(DataError, match="outside the data root"):
        BenchmarkData("plugin", root, ("Task",), _frame([inside, "/etc/passwd"]))
    BenchmarkData("plugin", root, ("Task",), _frame([inside]))  # fine


def test_image_folders_linked_from_another_disk_are_allowed(tmp_path):
    """Datasets are often symlinked in from bigger disks: the check is on the written path, not the link target."""
    elsewhere = tmp_path / "big-disk/images"
    elsewhere.mkdir(parents=True)
    root = tmp_path / "data"
    root.mkdir()
    (root / "images").symlink_to(elsewhere)
    BenchmarkData("plugin", root, ("Task",), _frame([str(root / "images/a.png")]))
