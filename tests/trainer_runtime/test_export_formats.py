"""The export format table (no torch): what is offered, why the rest is not, where files go."""

from __future__ import annotations

from trainer_runtime.inference.export import (
    EXPORT_FORMATS,
    FORMAT_CONTENT_TYPE,
    FORMAT_SUFFIX,
    UNSUPPORTED_FORMATS,
    parity_images,
    synthetic_image,
    unsupported_reason,
)


def test_offered_formats_and_reasons_for_the_others() -> None:
    assert EXPORT_FORMATS == ("onnx", "torchscript", "openvino")
    for fmt in EXPORT_FORMATS:
        for fw in ("ultralytics", "timm", "transformers"):
            assert unsupported_reason(fmt, fw) is None
        assert fmt in FORMAT_SUFFIX and fmt in FORMAT_CONTENT_TYPE
    assert FORMAT_CONTENT_TYPE["openvino"] == "application/zip"
    assert not set(EXPORT_FORMATS) & set(UNSUPPORTED_FORMATS)
    for fmt in ("tflite", "saved_model", "engine", "coreml", "ncnn", "paddle"):
        reason = unsupported_reason(fmt)
        assert reason and fmt in reason and reason.endswith("supported formats: onnx, torchscript, openvino")
    assert "TensorFlow" in str(unsupported_reason("saved_model"))
    assert "GPU" in str(unsupported_reason("engine"))
    assert "unknown" in str(unsupported_reason("bogus"))
    assert "not offered for caffe" in str(unsupported_reason("onnx", "caffe"))


def test_parity_images_are_fixed_and_distinct() -> None:
    a, b = parity_images(), parity_images()
    assert len(a) == 3 and all(x.tobytes() == y.tobytes() for x, y in zip(a, b, strict=True))
    assert len({im.tobytes() for im in a}) == 3
    given = synthetic_image(20, 1)
    assert parity_images(given)[0].tobytes() == given.tobytes()


def test_export_keys_and_download_names() -> None:
    from tools.inference import export_key

    assert export_key(3, 7, "onnx") == "results/exports/3/7.onnx"
    assert export_key(3, 8, "torchscript") == "results/exports/3/8.torchscript"
    assert export_key(3, 9, "openvino") == "results/exports/3/9_openvino_model.zip"
