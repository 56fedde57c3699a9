"""``mnist-classifier predict`` and ``export``: output lines, CSV, --explain, bad files, exit codes."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mnist_classifier.cli import main
from mnist_classifier.cli.predict import collect_images


@pytest.fixture(scope="module")
def digits(mnist, tmp_path_factory) -> tuple[Path, list[int]]:
    """A folder of 6 MNIST test digits as PNG (two in a sub-folder, one as JPEG-free BMP)."""
    folder = tmp_path_factory.mktemp("digits")
    (folder / "sub").mkdir()
    labels = []
    for i in range(6):
        image = Image.fromarray(mnist.test_images[i].numpy())
        target = folder / "sub" if i >= 4 else folder
        image.save(target / (f"d{i}.bmp" if i == 5 else f"d{i}.png"))
        labels.append(int(mnist.test_labels[i]))
    (folder / "readme.txt").write_text("not an image, and not picked up: wrong extension\n")
    return folder, labels


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_predict_a_folder(trained_run: Path, digits, capsys) -> None:
    folder, labels = digits
    code, out, err = run_cli(capsys, "predict", str(trained_run), str(folder), "--top-k", "2")
    assert code == 0, err
    lines = out.splitlines()
    assert len(lines) == 6
    names = [line.split()[0] for line in lines]
    assert names == [str(folder / f"d{i}.png") for i in range(4)] + [
        str(folder / "sub" / "d4.png"),
        str(folder / "sub" / "d5.bmp"),
    ]
    for line, label in zip(lines, labels, strict=True):
        fields = line.split()
        assert fields[1] == str(label)
        assert fields[2].endswith("%") and len(fields[2].split(".")[1]) == 3  # 98.12%
        assert "top-2:" in line and line.count("%") == 3
    assert "6 images: 6 predicted, 0 unsure, 0 failed" in err


def test_csv_and_explain(trained_run: Path, digits, tmp_path: Path, capsys) -> None:
    folder, labels = digits
    out_csv, explain = tmp_path / "out" / "results.csv", tmp_path / "explain"
    code, _, err = run_cli(
        capsys,
        "predict",
        str(trained_run),
        str(folder / "d0.png"),
        str(folder / "sub"),
        "--csv",
        str(out_csv),
        "--explain",
        str(explain),
    )
    assert code == 0, err
    rows = list(csv.DictReader(out_csv.open(newline="")))
    assert list(rows[0]) == [
        "file",
        "digit",
        "confidence",
        *(f"p{d}" for d in range(10)),
        "error",
    ]
    assert [r["digit"] for r in rows] == [str(labels[0]), str(labels[4]), str(labels[5])]
    for row in rows:
        probs = [float(row[f"p{d}"]) for d in range(10)]
        assert abs(sum(probs) - 1.0) < 1e-4
        assert float(row["confidence"]) == max(probs)
        assert row["error"] == ""
    pictures = sorted(p.name for p in explain.iterdir())
    assert pictures == ["d0.png", "d4.png", "d5.png"]
    with Image.open(explain / "d0.png") as picture:
        assert picture.format == "PNG" and picture.width > 2 * 224
        # the right panel is the 28x28 input, upscaled by 8 with nearest neighbour
        right = np.asarray(picture.convert("L"))[26 : 26 + 224, 8 + 224 + 12 :][:, :224]
    np.testing.assert_array_equal(right[::8, ::8], np.asarray(Image.open(folder / "d0.png")))


def test_bad_files_are_reported_and_the_others_go_on(
    trained_run: Path, digits, tmp_path: Path, capsys
) -> None:
    folder, labels = digits
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    (mixed / "a_good.png").write_bytes((folder / "d0.png").read_bytes())
    (mixed / "b_text.jpg").write_text("hello")
    data = (folder / "d1.png").read_bytes()
    (mixed / "c_truncated.png").write_bytes(data[: len(data) // 2])
    (mixed / "d_empty.png").write_bytes(b"")
    Image.new("RGB", (120, 90), (250, 250, 245)).save(mixed / "e_blank.png")
    (mixed / "f_good.png").write_bytes((folder / "d2.png").read_bytes())
    out_csv = tmp_path / "r.csv"
    code, out, err = run_cli(
        capsys,
        "predict",
        str(trained_run),
        str(mixed),
        str(tmp_path / "missing.png"),
        "--csv",
        str(out_csv),
    )
    assert code == 1
    assert [Path(line.split()[0]).name for line in out.splitlines()] == [
        "a_good.png",
        "f_good.png",
    ]
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(errors) == 5
    for name, text in [
        ("b_text.jpg", "not an image"),
        ("c_truncated.png", "truncated"),
        ("d_empty.png", "empty file"),
        ("e_blank.png", "no digit found"),
        ("missing.png", "no such file or folder"),
    ]:
        assert any(name in line and text in line for line in errors), (name, errors)
    assert "7 images: 2 predicted, 0 unsure, 5 failed" in err
    rows = list(csv.DictReader(out_csv.open(newline="")))
    assert len(rows) == 7
    failed = [r for r in rows if r["error"]]
    assert len(failed) == 5
    assert all(r["digit"] == "" and r["p0"] == "" for r in failed)
    assert [r["digit"] for r in rows if not r["error"]] == [str(labels[0]), str(labels[2])]


def test_min_confidence_prints_unsure(trained_run: Path, digits, tmp_path: Path, capsys) -> None:
    folder, _ = digits
    out_csv = tmp_path / "all.csv"
    code, _, _ = run_cli(capsys, "predict", str(trained_run), str(folder), "--csv", str(out_csv))
    rows = list(csv.DictReader(out_csv.open(newline="")))
    confidence = sorted((float(r["confidence"]), r["file"]) for r in rows)
    threshold = (confidence[0][0] + confidence[1][0]) / 2  # only the least sure one is below
    code, out, err = run_cli(
        capsys, "predict", str(trained_run), str(folder), "--min-confidence", f"{threshold:.9f}"
    )
    assert code == 0, err
    unsure = [line.split()[0] for line in out.splitlines() if line.split()[1] == "unsure"]
    assert unsure == [confidence[0][1]]
    assert "6 images: 5 predicted, 1 unsure, 0 failed" in err


def test_usage_errors_exit_2_with_one_line(trained_run: Path, digits, capsys) -> None:
    folder, _ = digits
    for extra in (["--backend", "tflite"], ["--top-k", "0"], ["--min-confidence", "2"]):
        code, out, err = run_cli(capsys, "predict", str(trained_run), str(folder), *extra)
        assert code == 2
        assert out == "" and len(err.strip().splitlines()) == 1, err


def test_a_bad_checkpoint_is_one_line(tmp_path: Path, digits, capsys) -> None:
    folder, _ = digits
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"nope")
    code, out, err = run_cli(capsys, "predict", str(bad), str(folder))
    assert code == 1 and out == ""
    assert err.startswith("mnist-classifier: error: ") and len(err.strip().splitlines()) == 1


def test_export_then_predict_with_onnx(trained_run: Path, digits, tmp_path: Path, capsys) -> None:
    folder, _ = digits
    model = tmp_path / "model.onnx"
    code, out, err = run_cli(
        capsys, "export", str(trained_run), "--format", "onnx", "--out", str(model)
    )
    assert code == 0, err
    assert model.is_file() and "matches PyTorch" in out
    code, onnx_out, err = run_cli(capsys, "predict", str(model), str(folder), "--backend", "onnx")
    assert code == 0, err
    code, torch_out, _ = run_cli(capsys, "predict", str(trained_run), str(folder))
    # same digits; confidences equal to the printed two decimals
    assert onnx_out == torch_out
    code, out, err = run_cli(
        capsys,
        "export",
        str(trained_run),
        "--format",
        "torchscript",
        "--out",
        str(tmp_path / "m.pt"),
    )
    assert code == 0 and (tmp_path / "m.pt").is_file()


def test_collect_images(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / ".hidden").mkdir()
    for name in ("a/x.PNG", "a/y.jpeg", "a/z.txt", "a/.hidden/w.png", "b.webp"):
        (tmp_path / name).write_bytes(b"")
    (tmp_path / "empty").mkdir()
    entries = collect_images(
        [str(tmp_path / "a"), str(tmp_path / "b.webp"), str(tmp_path / "empty"), "nope"]
    )
    assert [(Path(n).name, e is None) for n, e in entries] == [
        ("x.PNG", True),
        ("y.jpeg", True),
        ("b.webp", True),
        ("empty", False),
        ("nope", False),
    ]
    assert "no images" in str(entries[3][1])


def test_explain_picture_boxes_the_digit(trained_run: Path, tmp_path: Path, mnist) -> None:
    """For a photo-like input, the picture marks the part of the image that was read."""
    from mnist_classifier.inference.explain import explain_picture
    from mnist_classifier.inference.predictor import load_predictor

    page = np.full((300, 400), 235, np.uint8)
    page[100:184, 250:334] = 255 - np.kron(mnist.test_images[0].numpy(), np.ones((3, 3), np.uint8))
    path = tmp_path / "page.png"
    Image.fromarray(page).save(path)
    (p,) = load_predictor(trained_run, device="cpu").predict(path)
    picture = np.asarray(explain_picture(p))
    red = (picture[..., 0] > 200) & (picture[..., 1] < 80) & (picture[..., 2] < 80)
    ys, xs = np.nonzero(red)
    assert len(xs) > 100
    # The 400x300 page is drawn at 224/400 = 0.56 of its size at (8, 54) in the picture;
    # the box lies around the digit (page pixels x 250..334, y 100..184).
    assert xs.min() >= 8 + 250 * 0.56 - 4 and xs.max() <= 8 + 334 * 0.56 + 4
    assert ys.min() >= 54 + 100 * 0.56 - 4 and ys.max() <= 54 + 184 * 0.56 + 4
