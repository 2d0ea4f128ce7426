"""Media decoded beside the model: images become upright PIL images (in their own mode, so each model's colour
rules still apply) in the server's thread pool; audio, videos, documents and point clouds stay bytes, which the
model's own decoders read (audio, video and PDF in their sandboxed processes, with the frame sampling of the
model's card). What ``embed`` then computes equals ``embed`` of the bytes."""

from __future__ import annotations

from typing import Any

from zoo.apps.serve.protocol import Media


def decode_items(items: list[Any]) -> list[Any]:
    """The items ready for ``embed``; an item that cannot be decoded raises InvalidInputError naming its index."""
    return [_decoded(item, i) for i, item in enumerate(items)]


def _decoded(item: Any, index: int) -> Any:
    if isinstance(item, Media):
        return _media(item, index)
    if isinstance(item, dict):  # an interleaved item: {"content": [parts]}
        return {"content": [{key: _media(value, index) if isinstance(value, Media) else value
                             for key, value in part.items()} for part in item["content"]]}
    return item


def _media(media: Media, index: int) -> Any:
    if media.modality == "image":
        from zoo.inputs.images import decode_image

        return decode_image(media.data, index=index)
    return media.data
