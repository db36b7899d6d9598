"""Study config (editable TOML) and image manifest (hashes, checks, served only from the manifest)."""
import hashlib
import json
import sys

import numpy as np
import pytest
from PIL import Image

from study_app import ConfigError, ManifestError, Study, init_study, load_config
from study_app.config import CONFIG_FILENAME, StudyConfig, config_from_dict, dump_config
from study_app.manifest import load_manifest

from study_app.simulate import write_synthetic_images as write_images

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


def test_init_writes_editable_config_and_manifest_with_hashes(make_study, image_sets):
    study_dir = make_study(title="Anime faces", completion_code="XYZ123", redirect_url="https://example.org/done",
                           equivalence_margin=0.03, store_platform_ids=True)
    text = (study_dir / CONFIG_FILENAME).read_text()
    assert "# " in text and 'title = "Anime faces"' in text      # commented and human-editable
    config = load_config(study_dir)
    assert config.completion.code == "XYZ123" and config.analysis.equivalence_margin == 0.03
    assert config.condition_labels() == ["A", "B"] and config.recruitment.store_platform_ids
    for field in ("briefing", "debrief", "contact", "data_use", "withdrawal"):
        assert getattr(config.texts, field).strip()
    assert len(config.consent_items) >= 4
    # Platform IDs are stored: the texts say so, not "a random participant code" only.
    assert "recruitment-platform ID" in config.texts.data_use and "pseudonymous" in config.texts.data_use
    assert any("with my recruitment-platform ID" in item for item in config.consent_items)
    assert not any("stored under a random code" in item for item in config.consent_items)

    manifest = load_manifest(study_dir)
    assert len(manifest.ids("real")) == 24 and len(manifest.ids("fake", "A")) == 16 and manifest.ids("attention")
    entry = manifest.get("real/img000.png")
    assert len(entry.sha256) == 64 and (entry.width, entry.height, entry.format) == (32, 32, "PNG")
    assert (study_dir / entry.path).read_bytes() == (image_sets["real"] / "img000.png").read_bytes()
    assert manifest.normalisation == {} and not entry.source_sha256      # one format and mode: nothing re-encoded
    (small,) = manifest.warnings                                           # 32-px images, enlarged 10x
    assert "only 32x32 px" in small and "enlarged 10x" in small and "blocky" in small


def test_edited_config_is_read_back_and_typos_are_errors(make_study):
    study_dir = make_study()
    path = study_dir / CONFIG_FILENAME
    path.write_text(path.read_text().replace("trials_per_condition = 4", "trials_per_condition = 6"))
    assert load_config(study_dir).design.trials_per_condition == 6
    path.write_text(path.read_text().replace("[design]", "[design]\ntrials_per_conditon = 3"))
    with pytest.raises(ConfigError, match="trials_per_conditon"):
        load_config(study_dir)


@pytest.mark.parametrize("change, message", [
    ({"design": {"assignment": "sideways"}}, "assignment"),
    ({"design": {"trials_per_condition": 0}}, "trials_per_condition"),
    ({"analysis": {"equivalence_margin": 0.7}}, "equivalence_margin"),
    ({"design": {"seed": "seven"}}, "design.seed"),
    ({"completion": {"redirect_url": "javascript:alert(1)"}}, "redirect_url"),
    ({"admin_password": "hunter2"}, "admin_password"),  # never in the config file
])
def test_bad_config_values_name_the_field(change, message):
    data = tomllib.loads(dump_config(StudyConfig(conditions=[])))
    data["conditions"] = [{"label": "A"}]
    for key, value in change.items():
        if isinstance(value, dict):
            data[key].update(value)
        else:
            data[key] = value
    with pytest.raises(ConfigError, match=message):
        config_from_dict(data)


def test_config_survives_round_trip_with_awkward_text():
    config = StudyConfig(conditions=[])
    config.texts.debrief = "Quotes \" and ''' and backslash \\ and\nnew lines {minutes}"
    data = tomllib.loads(dump_config(config))
    data["conditions"] = [{"label": "A"}]
    assert config_from_dict(data).texts.debrief == config.texts.debrief


def test_empty_image_folder_is_a_clear_error_and_leaves_nothing(tmp_path, image_sets):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ManifestError, match="no images found"):
        init_study(tmp_path / "s", empty, [("A", image_sets["A"])])
    assert not (tmp_path / "s").exists()
    with pytest.raises(ManifestError, match="not a folder"):
        init_study(tmp_path / "s", tmp_path / "missing", [("A", image_sets["A"])])


def test_existing_study_is_not_overwritten_without_force(make_study, image_sets):
    study_dir = make_study()
    with pytest.raises(ConfigError, match="already holds a study"):
        init_study(study_dir, image_sets["real"], [("A", image_sets["A"])])
    init_study(study_dir, image_sets["real"], [("A", image_sets["A"])], force=True)
    assert load_config(study_dir).condition_labels() == ["A"]


def test_size_and_format_mismatch_warns(tmp_path, image_sets):
    big = write_images(tmp_path / "big", 8, seed=5, size=(64, 64))
    jpeg = write_images(tmp_path / "jpeg", 8, seed=6, fmt="JPEG", quality=60)
    study_dir = init_study(tmp_path / "s", image_sets["real"], [("big", big), ("jpg", jpeg)], trials_per_condition=4)
    warnings = "\n".join(load_manifest(study_dir).warnings)
    assert "resolution differs" in warnings and "64x64" in warnings
    assert "format differs" in warnings and "JPEG" in warnings


def test_jpeg_quality_difference_warns(tmp_path):
    real = write_images(tmp_path / "real", 6, seed=1, fmt="JPEG", quality=95)
    fake = write_images(tmp_path / "fake", 6, seed=2, fmt="JPEG", quality=50)
    study_dir = init_study(tmp_path / "s", real, [("f", fake)], trials_per_condition=4)
    manifest = load_manifest(study_dir)
    assert abs(manifest.get("real/img000.jpg").jpeg_quality - 95) <= 2
    assert abs(manifest.get("f/img000.jpg").jpeg_quality - 50) <= 2
    assert any("JPEG quality differs" in w for w in manifest.warnings)


def test_same_image_as_real_and_fake_is_refused(tmp_path, image_sets):
    fake = tmp_path / "leaky"
    fake.mkdir()
    (fake / "x.png").write_bytes((image_sets["real"] / "img003.png").read_bytes())
    with pytest.raises(ManifestError, match="both real and fake"):
        init_study(tmp_path / "s", image_sets["real"], [("A", fake)])


def test_unreadable_image_is_refused(tmp_path, image_sets):
    broken = tmp_path / "broken"
    write_images(broken, 3, seed=9)
    (broken / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    with pytest.raises(ManifestError, match="bad.png"):
        init_study(tmp_path / "s", image_sets["real"], [("A", broken)])


def test_images_are_served_only_from_the_manifest_with_their_hash(make_study):
    study = Study(make_study())
    data = study.images.read("A/img001.png")
    assert data[:4] == b"\x89PNG"
    with pytest.raises(ManifestError, match="not in the manifest"):
        study.images.read("../study.toml")
    fresh = Study(study.dir)  # no cache: a changed file is caught
    (study.dir / fresh.manifest.get("A/img002.png").path).write_bytes(data)
    with pytest.raises(ManifestError, match="changed since"):
        fresh.images.read("A/img002.png")
    assert any("A/img002.png" in p for p in fresh.images.verify_all())


def test_manifest_path_outside_study_dir_is_refused(make_study):
    study_dir = make_study()
    path = study_dir / "manifest.json"
    data = json.loads(path.read_text())
    data["images"][0]["path"] = "../../etc/passwd"
    path.write_text(json.dumps(data))
    with pytest.raises(ManifestError, match="outside the study dir"):
        Study(study_dir).images.read(data["images"][0]["id"])


def test_attention_image_is_a_scrambled_copy_of_a_real_image(make_study):
    study = Study(make_study())
    entry = study.manifest.get(study.manifest.ids("attention")[0])
    assert study.manifest.get(entry.derived_from).role == "real"
    with Image.open(study.images.path(entry.id)) as att, Image.open(study.images.path(entry.derived_from)) as src:
        assert att.size == src.size and att.convert("RGB").tobytes() != src.convert("RGB").tobytes()


def test_exposure_limits_need_the_timed_presentation(make_study):
    with pytest.raises(ConfigError, match="presentation"):
        make_study(exposure_ms=500)
    with pytest.raises(ConfigError, match="presentation"):
        make_study(presentation="flash")
    assert load_config(make_study(presentation="timed", exposure_ms=500)).design.exposure_ms == 500


def _pixels(path):
    with Image.open(path) as img:
        return np.asarray(img.convert("RGB"))


def test_sets_in_different_formats_are_normalised_to_one_lossless_format(tmp_path, image_sets):
    from study_app import init_study

    jpegs = write_images(tmp_path / "jpeg-fakes", 12, seed=5, fmt="JPEG", quality=80)
    study_dir = init_study(tmp_path / "study", image_sets["real"], [("J", jpegs)], trials_per_condition=4,
                           attention_checks=1, seed=1)
    manifest = load_manifest(study_dir)
    assert manifest.normalisation["format"] == "PNG" and manifest.normalisation["mode"] == "RGB"
    assert "formats JPEG, PNG" in manifest.normalisation["reason"]
    assert {e.format for e in manifest.images} == {"PNG"}                  # attention images too: one MIME type
    fake = manifest.get("J/img000.jpg")
    original = jpegs / "img000.jpg"
    assert fake.source_format == "JPEG" and fake.source_sha256 == hashlib.sha256(original.read_bytes()).hexdigest()
    served = study_dir / fake.path
    assert hashlib.sha256(served.read_bytes()).hexdigest() == fake.sha256 and served.suffix == ".png"
    assert np.array_equal(_pixels(served), _pixels(original))            # lossless: the decoded JPEG's pixels
    assert not (study_dir / "images" / "J" / "img000.jpg").exists()
    assert any("re-encoded as a lossless PNG" in w for w in manifest.warnings)
    assert Study(study_dir).images.verify_all() == []


def test_an_alpha_channel_in_one_set_is_composited_over_white(tmp_path, image_sets):
    from study_app import init_study

    folder = tmp_path / "rgba"
    folder.mkdir()
    for i in range(6):
        img = Image.new("RGBA", (32, 32), (200, 10, 10, 255))
        img.putpixel((0, 0), (0, 0, 0, 0))                                 # one transparent pixel
        img.save(folder / f"x{i}.png")
    study_dir = init_study(tmp_path / "study", image_sets["real"], [("T", folder)], trials_per_condition=2, seed=1)
    manifest = load_manifest(study_dir)
    entry = manifest.get("T/x0.png")
    assert manifest.normalisation["mode"] == "RGB" and entry.mode == "RGB" and entry.source_mode == "RGBA"
    pixels = _pixels(study_dir / entry.path)
    assert tuple(pixels[0, 0]) == (255, 255, 255) and tuple(pixels[1, 1]) == (200, 10, 10)


def test_attention_images_are_saved_in_the_studys_format(tmp_path):
    from study_app import init_study

    real = write_images(tmp_path / "real", 12, seed=1, fmt="JPEG", size=(256, 256))
    fake = write_images(tmp_path / "fake", 12, seed=2, fmt="JPEG", size=(256, 256))
    study_dir = init_study(tmp_path / "study", real, [("A", fake)], trials_per_condition=4, attention_checks=1, seed=1)
    manifest = load_manifest(study_dir)
    assert manifest.normalisation == {} and {e.format for e in manifest.images} == {"JPEG"}
    assert not any("enlarged" in w for w in manifest.warnings)            # 256 px: no small-image warning
    assert any("enlarged" in w for w in load_manifest(init_study(
        tmp_path / "small", write_images(tmp_path / "r64", 8, seed=3, size=(64, 64)),
        [("A", write_images(tmp_path / "f64", 8, seed=4, size=(64, 64)))], trials_per_condition=2)).warnings)
