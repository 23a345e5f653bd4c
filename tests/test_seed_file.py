"""seed.json: exact round trip, every kind of damaged file refused with a SeedFileError that
names the problem, and the spectrum plot (real analyses of real models, no mocks)."""

import json
from pathlib import Path

import matplotlib.image
import numpy as np
import pytest

from lightning_modules.nets import build_model
from lightning_modules.ranks import ModeSpectra, candidate_ranks, error_bound
from sweep.errors import TuckerSweepError
from sweep.seeding.seed_file import (
    SCHEMA_NAME,
    SCHEMA_VERSION,
    SeedFile,
    SeedFileError,
    build_seed,
    read_seed,
    write_seed,
)
from sweep.seeding.spectrum_plot import plot_spectra

THRESHOLDS = (0.8, 0.95)
LAYER = "stage2.block1.conv1"  # 32 x 16 x 3 x 3


def _seed(model_name: str, thresholds=THRESHOLDS, **options) -> SeedFile:
    model = build_model(model_name, 3, 10, **options)
    analyses = candidate_ranks(model, thresholds, input_shape=(3, 8, 8))
    return build_seed(
        analyses,
        model={
            "name": model_name,
            "options": {"width": 16},
            "in_channels": 3,
            "num_classes": 10,
            "input_size": [8, 8],
        },
        data={"name": "digits", "options": {"seed": 0, "batch_size": 64}},
        baseline={
            "val_acc": 0.9736842105263158,
            "epochs": 3,
            "params": 78042,
            "flops": 1_234_567,
            "checkpoint": "runs/baseline/dense.ckpt",
            "run_id": None,
        },
        method="energy",
        thresholds=thresholds,
    )


@pytest.fixture(scope="module")
def seed() -> SeedFile:
    return _seed("resnet8")


@pytest.fixture
def seed_path(seed, tmp_path) -> Path:
    return write_seed(seed, tmp_path / "sweep" / "seed.json")


def _variant(seed_path: Path, change) -> Path:
    """A copy of the seed file with `change` applied to its parsed JSON."""
    content = json.loads(seed_path.read_text())
    change(content)
    variant = seed_path.with_name("variant.json")
    variant.write_text(json.dumps(content))
    return variant


def test_round_trip_is_exact(seed, seed_path):
    restored = read_seed(seed_path)
    assert restored == seed
    assert restored.model_dump() == seed.model_dump()
    raw = json.loads(seed_path.read_text())
    assert raw["schema_name"] == SCHEMA_NAME and raw["schema_version"] == SCHEMA_VERSION == 2
    layer = raw["layers"][LAYER]
    assert set(layer["spectra"]) == {"out", "in", "spatial"}
    assert all(isinstance(value, float) for value in layer["spectra"]["out"])
    assert "hooi_error" not in layer["candidates"][0]
    assert isinstance(layer["candidates"][0]["error_bound"], float)
    assert layer["shape"] == [32, 16, 3, 3]
    assert restored.baseline.checkpoint == "runs/baseline/dense.ckpt"
    assert restored.created.tzinfo is not None


def test_convenience_accessors(seed):
    names = seed.layer_names()
    assert names[0] == "stage1.block1.conv1" and "stem.conv" not in names
    assert "stage2.block1.shortcut.conv" in names
    ranks = seed.candidates_for(LAYER)
    assert ranks and all(len(triple) == 3 and triple.out_rank >= 1 for triple in ranks)
    assert ranks == [c.ranks for c in seed.layers[LAYER].candidates]
    with pytest.raises(SeedFileError, match=r"no layer 'block9\.conv1'"):
        seed.candidates_for("block9.conv1")


def test_missing_file(tmp_path):
    with pytest.raises(SeedFileError, match="does not exist"):
        read_seed(tmp_path / "nowhere" / "seed.json")


def test_corrupted_json(seed_path):
    seed_path.write_text(seed_path.read_text()[:-200])
    with pytest.raises(SeedFileError, match=r"not valid JSON \(.* at line \d+ column \d+\)"):
        read_seed(seed_path)


def test_wrong_schema_name(seed_path):
    variant = _variant(seed_path, lambda c: c.update(schema_name="tucker-sweep/report"))
    with pytest.raises(SeedFileError, match="schema_name 'tucker-sweep/report'"):
        read_seed(variant)


def test_future_schema_version(seed_path):
    variant = _variant(seed_path, lambda c: c.update(schema_version=3, layers="reorganised"))
    with pytest.raises(SeedFileError, match=r"newer tucker-sweep \(version 3 > 2\): upgrade"):
        read_seed(variant)


def _as_version_1(content):
    """The file as version 1 wrote it: each candidate scored by a HOOI error, no bound."""
    content["schema_version"] = 1
    for layer in content["layers"].values():
        for candidate in layer["candidates"]:
            candidate["hooi_error"] = 0.5 * candidate.pop("error_bound")


def test_version_1_files_are_read_with_the_bound_from_their_own_spectra(seed, seed_path):
    restored = read_seed(_variant(seed_path, _as_version_1))
    assert restored.schema_version == SCHEMA_VERSION
    assert restored.layer_names() == seed.layer_names()
    for name, layer in restored.layers.items():
        assert layer.spectra == seed.layers[name].spectra
        spectra = ModeSpectra(*(np.asarray(v) for v in (layer.spectra.out, layer.spectra.in_,
                                                       layer.spectra.spatial)))  # fmt: skip
        for mine, written in zip(layer.candidates, seed.layers[name].candidates, strict=True):
            assert mine.ranks == written.ranks
            assert mine.error_bound == pytest.approx(written.error_bound, rel=1e-12)
            assert mine.error_bound == pytest.approx(error_bound(spectra, mine.ranks), rel=1e-12)
    assert any(c.error_bound > 0.1 for layer in restored.layers.values() for c in layer.candidates)


def test_a_damaged_version_1_file_is_refused_in_one_line(seed_path):
    def damaged(content):
        _as_version_1(content)
        content["layers"][LAYER]["candidates"][0]["ranks"] = ["4", 1, 1]
        content["layers"][LAYER]["spectra"]["out"] = "lost"

    with pytest.raises(SeedFileError) as error:
        read_seed(_variant(seed_path, damaged))
    message = str(error.value)
    assert f"layers['{LAYER}'].spectra.out" in message and "\n" not in message
    assert "regenerate it with `tucker-sweep seed`" in message


def test_missing_field(seed_path):
    variant = _variant(seed_path, lambda c: c["baseline"].pop("val_acc"))
    with pytest.raises(SeedFileError, match=r"baseline\.val_acc: Field required"):
        read_seed(variant)


def test_ill_typed_fields_are_not_coerced(seed_path):
    def rank_as_text(content):
        content["layers"][LAYER]["candidates"][0]["ranks"][0] = "4"

    variant = _variant(seed_path, rank_as_text)
    path = rf"layers\['{LAYER}'\]\.candidates\[0\]\.ranks\[0\]"
    with pytest.raises(SeedFileError, match=path + ": Input should be a valid integer"):
        read_seed(variant)
    variant = _variant(seed_path, lambda c: c["model"].update(input_size=[8]))
    with pytest.raises(SeedFileError, match=r"model\.input_size"):
        read_seed(variant)


def test_infeasible_candidate(seed_path):
    def infeasible(content):
        content["layers"][LAYER]["candidates"][0]["ranks"] = [32, 1, 1]

    with pytest.raises(SeedFileError) as error:
        read_seed(_variant(seed_path, infeasible))
    message = str(error.value)
    assert f"layers['{LAYER}']" in message and "candidates[0] has infeasible ranks" in message
    assert "N' <= C'*D' (32 > 1)" in message
    assert "\n" not in message
    assert isinstance(error.value, TuckerSweepError) and isinstance(error.value, ValueError)


def test_spectra_that_do_not_fit_the_shape(seed_path):
    variant = _variant(seed_path, lambda c: c["layers"][LAYER]["spectra"]["in"].pop())
    with pytest.raises(SeedFileError, match=r"spectra\.in has 15 values, a 32x16x3x3 conv has 16"):
        read_seed(variant)


def test_build_seed_refuses_bad_context():
    analyses = candidate_ranks(build_model("vgg_small", 1, 10, width=4), (0.9,))
    good = {
        "model": {"name": "vgg_small", "in_channels": 1, "num_classes": 10, "input_size": [8, 8]},
        "data": {"name": "digits"},
        "baseline": {"val_acc": 0.5, "epochs": 1, "params": 10, "flops": 10},
        "thresholds": (0.9,),
    }
    assert build_seed(analyses, method="energy", **good).layer_names()[0] == "block1.conv2"
    with pytest.raises(SeedFileError, match="method must be one of"):
        build_seed(analyses, method="svd", **good)
    bad = {**good, "baseline": {**good["baseline"], "val_acc": 97.0}}
    with pytest.raises(SeedFileError, match=r"baseline\.val_acc: Input should be less than"):
        build_seed(analyses, method="energy", **bad)


def _image(path: Path) -> np.ndarray:
    assert path.stat().st_size > 20_000
    image = matplotlib.image.imread(path)
    assert image.ndim == 3 and image.shape[2] in (3, 4)
    rgb = np.round(image[..., :3] * 255).astype(np.uint32)
    colours = np.unique(rgb[..., 0] << 16 | rgb[..., 1] << 8 | rgb[..., 2])
    assert len(colours) > 20, "not a single colour"
    return image


def test_plot_spectra_writes_a_png_with_a_panel_per_layer(seed, tmp_path):
    import matplotlib.pyplot as plt

    small = _image(plot_spectra(seed, tmp_path / "plots" / "spectra.png"))
    assert small.shape[0] > 400 and small.shape[1] > 1000  # 8 layers: 4 x 2 panels
    # Twenty layers (resnet20) stay readable: more rows, the same panel size.
    large = _image(plot_spectra(_seed("resnet20", (0.9,), width=4), tmp_path / "resnet20.png"))
    assert large.shape[0] >= 2 * small.shape[0]
    assert large.shape[1] == small.shape[1]
    assert plt.get_fignums() == [], "no figure left open"
