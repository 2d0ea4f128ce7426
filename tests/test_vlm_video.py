"""Videos, several images per item and document pages in the vision-language embedders, against their upstreams.

Parity on the tiny random-weight fixtures (tests/fixtures/tiny_vlm.py), same frames, same weights:

- Qwen3-VL-Embedding: the reference is the original pipeline, step by step: the embedder's conversation,
  ``qwen_vl_utils.process_vision_info`` (0.0.14, the version the embedder uses) with its own frame sampling and
  resizing, transformers' Qwen3-VL processor (``do_resize=False``, ``do_sample_frames=False``, the video
  metadata) and ``Qwen3VLModel``, last token, L2 norm. qwen_vl_utils reads files with
  ``torchvision.io.read_video``, which torchvision 0.29 no longer has: a plain PyAV loop with its contract
  stands in (``pyav_read_video``). transformers 5 writes a video's tokens inside one more
  ``<|vision_start|>``/``<|vision_end|>`` pair than transformers 4.57 did (the model's release, whose layout
  the zoo keeps): the reference ids have that outer pair removed (``unnest``), and nothing else.
- VLM2Vec-V2: its MMEB-V2 frame choice (save_frames then process_video_frames, written out here from
  src/utils/vision_utils/vision_utils.py), each frame resized to the first frame's size by transformers'
  ``smart_resize`` (PIL bicubic, as VLM2Vec's copy of the image processor), transformers' Qwen2-VL processor with
  ``videos=`` and ``Qwen2VLModel`` with 1-D positions (VLM2Vec's prompts have no vision-start token).
"""

from __future__ import annotations

import functools
import math

import numpy as np
import pytest
import torch

import zoo
from tests.fixtures.clips import TEXT_PAGE, pan_frames, pdf_bytes, reference_frames, write_clip
from tests.fixtures.tiny_vlm import tiny_vlm_cache  # noqa: F401
from zoo.adapters.base import EmbedContext
from zoo.errors import InvalidInputError

V2, QWEN3 = "vlm2vec-v2.0", "qwen3-vl-embedding-2b"
MIN_COS = 0.99999


@pytest.fixture(scope="module")
def models(tiny_vlm_cache):  # noqa: F811
    return functools.cache(zoo.load)  # each tiny model loaded once per module


@pytest.fixture
def pyav_read_video(monkeypatch):
    """``torchvision.io.read_video``'s contract (every frame, TCHW uint8, the stream's average rate) on PyAV."""
    import qwen_vl_utils.vision_process as vp

    def read_video(path, start_pts=0.0, end_pts=None, pts_unit="sec", output_format="TCHW"):
        assert (start_pts, end_pts, output_format) == (0.0, None, "TCHW")
        with open(path, "rb") as f:
            frames, fps = reference_frames(f.read())
        return torch.from_numpy(frames).permute(0, 3, 1, 2), torch.empty(0), {"video_fps": fps}

    monkeypatch.setattr(vp.io, "read_video", read_video, raising=False)
    monkeypatch.setattr(vp, "get_video_reader_backend", lambda: "torchvision")


def _prepared(emb, items: list, modality: str, **kw):
    """The zoo's per-item model inputs (token ids and pixel tensors), as ``embed`` makes them."""
    ctx = EmbedContext(instruction=kw.get("task_instruction"), prompt_name=kw.get("prompt_name"))
    checked = emb._apply_prompts(emb._check(items, modality), modality, ctx)
    return [emb.backbone.prepare(item, i) for i, item in enumerate(checked)]


def _last_token(model, **inputs) -> np.ndarray:
    """The reference vector: the model's last hidden state at the last token, L2-normalized."""
    with torch.inference_mode():
        hidden = model(**inputs, use_cache=False).last_hidden_state
    return torch.nn.functional.normalize(hidden[0, -1].float(), dim=-1).numpy()


def _cos(a, b) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(a @ b / np.linalg.norm(a) / np.linalg.norm(b))


# -- Qwen3-VL-Embedding -----------------------------------------------------------------------------------------------

def unnest(ids: list[int], tok) -> list[int]:
    """transformers 5's video layout to 4.57's: drop the outer vision start/end transformers 5 keeps around the
    per-frame blocks (a start followed by a timestamp, and the end right after a frame's end)."""
    start, end = tok.convert_tokens_to_ids("<|vision_start|>"), tok.convert_tokens_to_ids("<|vision_end|>")
    video, lt = tok.convert_tokens_to_ids("<|video_pad|>"), tok.encode("<", add_special_tokens=False)[0]
    out = []
    for i, t in enumerate(ids):
        if t == start and i + 1 < len(ids) and ids[i + 1] == lt:
            continue
        if t == end and out and out[-1] == end and i >= 2 and video in ids[max(0, i - 2):i - 1]:
            continue
        out.append(t)
    return out


def qwen3_reference(emb, content: list[dict], instruction: str = "Represent the user's input."):
    """The original pipeline's (ids, processor outputs, vector) for one item's user content."""
    from qwen_vl_utils import process_vision_info

    proc, model = emb.backbone.processor, emb.backbone.model
    conv = [{"role": "system", "content": [{"type": "text", "text": instruction}]},
            {"role": "user", "content": content}]
    text = proc.apply_chat_template(conv, add_generation_prompt=True, tokenize=False)
    images, videos, kwargs = process_vision_info(conv, image_patch_size=16, return_video_kwargs=True,
                                                 return_video_metadata=True)
    metadata = None
    if videos:
        videos, metadata = map(list, zip(*videos, strict=True))
    enc = proc(text=[text], images=images, videos=videos, video_metadata=metadata, do_resize=False,
               return_tensors="pt", **kwargs)
    ids = unnest(enc["input_ids"][0].tolist(), proc.tokenizer)
    types = torch.tensor(proc.create_mm_token_type_ids([ids]))
    vector = _last_token(model, input_ids=torch.tensor([ids]), attention_mask=torch.ones_like(torch.tensor([ids])),
                         pixel_values=enc.get("pixel_values"), image_grid_thw=enc.get("image_grid_thw"),
                         pixel_values_videos=enc.get("pixel_values_videos"),
                         video_grid_thw=enc.get("video_grid_thw"), mm_token_type_ids=types)
    return ids, enc, vector


def _same_inputs(ours, ids, enc):
    assert ours.ids == ids
    for key in ("pixel_values_videos", "video_grid_thw", "pixel_values", "image_grid_thw"):
        if key in enc:
            torch.testing.assert_close(ours.extras[key], enc[key], rtol=0, atol=1e-6)
        else:
            assert key not in ours.extras


@pytest.mark.parametrize("frames, fps", [(75, 10), (31, 12)])
def test_qwen3_video_file_equals_the_original_pipeline(models, tmp_path, pyav_read_video, frames, fps):
    emb = models(QWEN3)
    path = tmp_path / "pan.mp4"
    write_clip(path, pan_frames(frames, size=(96, 64)), fps=fps)
    ids, enc, vector = qwen3_reference(emb, [{"type": "video", "video": str(path), "fps": 1, "max_frames": 64}])
    (ours,) = _prepared(emb, [path], "video")
    _same_inputs(ours, ids, enc)
    text = emb.backbone.processor.tokenizer.decode(ours.ids)
    # 4.57's layout: the time, then the frame's tokens in their own start/end, no outer pair
    assert "user\n<0." in text and "<|vision_start|><0." not in text
    assert text.count("seconds><|vision_start|><|video_pad|>") == int(enc["video_grid_thw"][0, 0])
    assert _cos(emb.embed([str(path)], modality="video").vectors[0], vector) >= MIN_COS


def test_qwen3_frame_list_equals_the_original_pipeline(models):
    from PIL import Image

    emb = models(QWEN3)
    frames = [Image.fromarray(f) for f in pan_frames(9, size=(120, 70), photo="coffee")]  # odd: padded
    ids, enc, vector = qwen3_reference(emb, [{"type": "video", "video": frames, "total_pixels": 7864320}])
    (ours,) = _prepared(emb, [frames], "video")
    _same_inputs(ours, ids, enc)
    assert _cos(emb.embed([frames], modality="video").vectors[0], vector) >= MIN_COS


def test_qwen3_two_images_and_a_text_in_the_callers_order(models):
    from PIL import Image

    emb = models(QWEN3)
    a, b = (Image.fromarray(pan_frames(1, size=(90, 60), photo=p)[0]) for p in ("astronaut", "rocket"))
    content = [{"type": "image", "image": a, "min_pixels": 4096, "max_pixels": 1843200},
               {"type": "text", "text": "between two pictures"},
               {"type": "image", "image": b, "min_pixels": 4096, "max_pixels": 1843200}]
    ids, enc, vector = qwen3_reference(emb, content, "Retrieve images or text relevant to the user's query.")
    item = {"content": [{"image": a}, {"text": "between two pictures"}, {"image": b}]}
    (ours,) = _prepared(emb, [item], "interleaved", prompt_name="retrieval_query")
    _same_inputs(ours, ids, enc)
    got = emb.embed([item], modality="interleaved", prompt_name="retrieval_query").vectors[0]
    assert _cos(got, vector) >= MIN_COS
    swapped = {"content": [{"image": b}, {"text": "between two pictures"}, {"image": a}]}
    assert _cos(emb.embed([swapped], modality="interleaved", prompt_name="retrieval_query").vectors[0], got) < 0.9999


def test_qwen3_video_image_and_text_in_one_item(models, tmp_path, pyav_read_video):
    from PIL import Image

    emb = models(QWEN3)
    path = tmp_path / "clip.webm"
    write_clip(path, pan_frames(40, size=(64, 64), photo="chelsea"), fps=8, codec="libvpx-vp9", container="webm")
    image = Image.fromarray(pan_frames(1, size=(80, 50))[0])
    content = [{"type": "video", "video": str(path), "fps": 1, "max_frames": 64},
               {"type": "image", "image": image, "min_pixels": 4096, "max_pixels": 1843200},
               {"type": "text", "text": "a cat, then a photo"}]
    ids, enc, vector = qwen3_reference(emb, content)
    flat = {"video": path, "image": image, "text": "a cat, then a photo"}  # a flat dict: videos, images, texts
    (ours,) = _prepared(emb, [flat], "interleaved")
    _same_inputs(ours, ids, enc)
    assert _cos(emb.embed([flat], modality="interleaved").vectors[0], vector) >= MIN_COS


def test_qwen3_document_page_is_the_rendered_image(models):
    from zoo.inputs.documents import load_page

    emb = models(QWEN3)
    pdf = pdf_bytes((612, 792, TEXT_PAGE))
    page = load_page(pdf)  # 144 dpi: 1224 x 1584
    assert page.size == (1224, 1584)
    ids, enc, vector = qwen3_reference(emb, [{"type": "image", "image": page, "min_pixels": 4096,
                                              "max_pixels": 1843200}], "Find a document image that matches "
                                                                       "the given query.")
    (ours,) = _prepared(emb, [pdf], "document", prompt_name="document_query")
    _same_inputs(ours, ids, enc)
    got = emb.embed([{"document": pdf, "page": 0}], modality="interleaved", prompt_name="document_query")
    assert _cos(got.vectors[0], vector) >= MIN_COS


def test_a_model_without_video_refuses_it_by_index(models):
    emb = models("vlm2vec-qwen2vl-2b")
    with pytest.raises(InvalidInputError, match=r"input\[1\]: this model takes no video"):
        emb.embed([{"text": "fine"}, {"video": pan_frames(4)}], modality="interleaved")


# -- VLM2Vec-V2 -----------------------------------------------------------------------------------------------------

def mmeb_frames(total: int, keep: int = 64, num: int = 8) -> list[int]:
    """VLM2Vec's save_frames (keep every frame of a short video, else floor(i * total / keep)) then
    process_video_frames / sample_frames (num of them at linspace(0, n - 1, num, dtype=int), or all when fewer)."""
    saved = list(range(total)) if total <= keep else [math.floor(i * (total / keep)) for i in range(keep)]
    if num > len(saved):
        return saved
    return [saved[i] for i in np.linspace(0, len(saved) - 1, num, dtype=int).tolist()]


def v2_reference(emb, frames: np.ndarray, prompt: str):
    from PIL import Image
    from transformers import Qwen2VLProcessor
    from transformers.models.qwen2_vl.image_processing_qwen2_vl import smart_resize

    bb = emb.backbone
    h, w = smart_resize(frames.shape[1], frames.shape[2], 28, 3136, 1003520)
    resized = np.stack([np.asarray(Image.fromarray(f).resize((w, h), Image.Resampling.BICUBIC)) for f in frames])
    proc = Qwen2VLProcessor(image_processor=bb.image_processor, tokenizer=bb.tokenizer,
                            video_processor=bb.video_processor, chat_template="")
    enc = proc(text=[prompt], videos=[resized], do_resize=False, return_tensors="pt")
    ids = enc["input_ids"][0].tolist()
    return ids, enc, _last_token(bb.model, input_ids=enc["input_ids"], attention_mask=enc["attention_mask"],
                                 position_ids=torch.arange(len(ids))[None],
                                 pixel_values_videos=enc["pixel_values_videos"], video_grid_thw=enc["video_grid_thw"])


@pytest.mark.parametrize("total", [100, 13, 5])
def test_vlm2vec_v2_video_file_equals_the_mmeb_pipeline(models, tmp_path, total):
    emb = models(V2)
    data = write_clip(tmp_path / "pan.mp4", pan_frames(total, size=(96, 64)), fps=10)
    every, _ = reference_frames(data)
    ids, enc, vector = v2_reference(emb, every[mmeb_frames(total)],
                                    "<|video_pad|> Understand the content of the provided video.")
    (ours,) = _prepared(emb, [data], "video")
    _same_inputs(ours, ids, enc)
    assert _cos(emb.embed([data], modality="video").vectors[0], vector) >= MIN_COS


def test_vlm2vec_v2_video_and_document_prompts(models):
    emb = models(V2)
    pdf = pdf_bytes((612, 792, TEXT_PAGE))
    assert emb.prompts([{"video": pan_frames(3)}], modality="interleaved") == [
        "<|video_pad|> Understand the content of the provided video."]
    assert emb.prompts([{"document": pdf}], modality="interleaved") == [
        "<|image_pad|> Understand the content of the provided document image."]
    assert emb.prompts(["a dog runs"], prompt_name="video_query") == [
        "Find a video that contains the following visual content: a dog runs"]
    assert emb.prompts(["revenue in 2019"], prompt_name="document_query") == [
        "Find a document image that matches the given query: revenue in 2019"]
    # the image tasks keep their newline form
    assert emb.prompts(["A cat"], prompt_name="caption_query") == [
        "Find me an everyday image that matches the given caption: A cat\n"]


def test_vlm2vec_v2_frame_list_takes_eight_evenly(models):
    emb = models(V2)
    frames = pan_frames(20, size=(64, 64), photo="rocket")
    picked = frames[np.linspace(0, 19, 8, dtype=int)]
    ids, enc, vector = v2_reference(emb, picked, "<|video_pad|> Understand the content of the provided video.")
    (ours,) = _prepared(emb, [list(frames)], "video")
    _same_inputs(ours, ids, enc)
    assert _cos(emb.embed([frames], modality="video").vectors[0], vector) >= MIN_COS


def test_videos_batch_like_their_serial_results(models, tmp_path):
    emb = models(QWEN3)
    clips = [write_clip(None, pan_frames(n, size=(64, 48), photo=p), fps=6)
             for n, p in ((20, "astronaut"), (33, "coffee"), (12, "rocket"))]
    kinds = [{"video": clips[0]}, {"text": "a text between videos"}, {"video": clips[1]},
             {"video": clips[2], "text": "rocket"}]
    together = emb.embed(kinds, modality="interleaved").vectors
    for i, item in enumerate(kinds):
        alone = emb.embed([item], modality="interleaved").vectors[0]
        assert _cos(together[i], alone) >= MIN_COS


def test_encode_takes_sentence_transformers_video_forms(models):
    emb = models(QWEN3)
    clip = write_clip(None, pan_frames(16, size=(64, 48)), fps=8)
    video = emb.embed([clip], modality="video").vectors[0]
    assert _cos(emb.encode({"video": clip}), video) >= MIN_COS
    chat = [{"role": "system", "content": "Find a video that contains the following visual content."},
            {"role": "user", "content": [{"type": "text", "text": "a pan"}, {"type": "video", "video": clip}]}]
    own = emb.embed([{"content": [{"text": "a pan"}, {"video": clip}]}], modality="interleaved",
                    prompt_name="video_query").vectors[0]
    assert _cos(emb.encode(chat), own) >= MIN_COS
    assert _cos(emb.encode(chat), video) < 0.9999  # the text and the instruction count


def test_vlm2vec_v2_two_images_and_a_document_page(models):
    from PIL import Image
    from transformers import Qwen2VLProcessor
    from transformers.models.qwen2_vl.image_processing_qwen2_vl import smart_resize

    from zoo.inputs.documents import load_page

    emb = models(V2)
    bb = emb.backbone
    a, b = (Image.fromarray(pan_frames(1, size=(90, 60), photo=p)[0]) for p in ("astronaut", "rocket"))
    pdf = pdf_bytes((612, 792, TEXT_PAGE))
    proc = Qwen2VLProcessor(image_processor=bb.image_processor, tokenizer=bb.tokenizer,
                            video_processor=bb.video_processor, chat_template="")
    cases = [  # (zoo item, modality, kwargs, the images the processor gets, the prompt VLM2Vec's form gives)
        ({"image": [a, b], "text": "two photos"}, "interleaved", {"task_instruction": "Compare them:"}, [a, b],
         "<|image_pad|> <|image_pad|>\nCompare them: two photos\n"),
        (pdf, "document", {}, [load_page(pdf)],
         "<|image_pad|> Understand the content of the provided document image."),
    ]
    for item, modality, kw, images, prompt in cases:
        assert emb.prompts([item], modality=modality, **kw) == [prompt]
        resized = []
        for image in images:
            h, w = smart_resize(image.height, image.width, 28, 3136, 1003520)
            resized.append(image.resize((w, h), Image.Resampling.BICUBIC))
        enc = proc(text=[prompt], images=resized, do_resize=False, return_tensors="pt")
        (ours,) = _prepared(emb, [item], modality, **kw)
        _same_inputs(ours, enc["input_ids"][0].tolist(), enc)
        vector = _last_token(bb.model, input_ids=enc["input_ids"], attention_mask=enc["attention_mask"],
                             position_ids=torch.arange(enc["input_ids"].shape[1])[None],
                             pixel_values=enc["pixel_values"], image_grid_thw=enc["image_grid_thw"])
        assert _cos(emb.embed([item], modality=modality, **kw).vectors[0], vector) >= MIN_COS
