import itertools
from typing import Any, Dict, List, Tuple

import torch

__all__ = ["Instances"]


class Instances:
    """A list of per-instance fields (masks, boxes, classes, scores) of one image.

    All fields have the same length. ``image_size`` is ``(h, w)``.
    """

    def __init__(self, image_size: Tuple[int, int], **kwargs: Any):
        self._image_size = image_size
        self._fields: Dict[str, Any] = {}
        for k, v in kwargs.items():
            self.set(k, v)

    @property
    def image_size(self) -> Tuple[int, int]:
        """The ``(h, w)`` image size in pixels."""
        return self._image_size

    def __setattr__(self, name: str, val: Any) -> None:
        if name.startswith("_"):
            super().__setattr__(name, val)
        else:
            self.set(name, val)

    def __getattr__(self, name: str) -> Any:
        if name == "_fields" or name not in self._fields:
            raise AttributeError(f"Cannot find field '{name}' in the given Instances!")
        return self._fields[name]

    def set(self, name: str, value: Any) -> None:
        """Set field ``name`` to ``value``; its length must match that of the existing fields."""
        n = len(value)
        if len(self._fields):
            assert len(self) == n, f"Adding a field of length {n} to Instances of length {len(self)}"
        self._fields[name] = value

    def has(self, name: str) -> bool:
        """Return whether field ``name`` exists."""
        return name in self._fields

    def remove(self, name: str) -> None:
        """Delete field ``name`` (``KeyError`` if absent)."""
        del self._fields[name]

    def get(self, name: str) -> Any:
        """Return the value of field ``name`` (``KeyError`` if absent)."""
        return self._fields[name]

    def get_fields(self) -> Dict[str, Any]:
        """Return the name→value dict of all fields (the internal dict, not a copy)."""
        return self._fields

    def to(self, *args: Any, **kwargs: Any) -> "Instances":
        """Return new ``Instances`` with each field that has a ``.to`` method moved/cast by it (others kept as is)."""
        ret = Instances(self._image_size)
        for k, v in self._fields.items():
            if hasattr(v, "to"):
                v = v.to(*args, **kwargs)
            ret.set(k, v)
        return ret

    def __getitem__(self, item) -> "Instances":
        if type(item) is int:
            if item >= len(self) or item < -len(self):
                raise IndexError("Instances index out of range!")
            item = slice(item, None, len(self))
        ret = Instances(self._image_size)
        for k, v in self._fields.items():
            ret.set(k, v[item])
        return ret

    def __len__(self) -> int:
        for v in self._fields.values():
            return v.__len__()
        return 0

    @staticmethod
    def cat(instance_lists: List["Instances"]) -> "Instances":
        """Concatenate ``Instances`` of the same image along the instance dimension.

        Fields are joined with ``torch.cat`` (tensors), list chaining (lists) or ``type(v).cat``; the field names of the
        first element are used. A single-element list returns that element itself (not a copy).
        """
        assert len(instance_lists) > 0
        if len(instance_lists) == 1:
            return instance_lists[0]
        image_size = instance_lists[0].image_size
        ret = Instances(image_size)
        for k in instance_lists[0]._fields.keys():
            values = [i.get(k) for i in instance_lists]
            v0 = values[0]
            if isinstance(v0, torch.Tensor):
                values = torch.cat(values, dim=0)
            elif isinstance(v0, list):
                values = list(itertools.chain(*values))
            elif hasattr(type(v0), "cat"):
                values = type(v0).cat(values)
            else:
                raise ValueError(f"Unsupported type {type(v0)} for concatenation")
            ret.set(k, values)
        return ret

    def __repr__(self) -> str:
        fields = ", ".join(f"{k}: {v}" for k, v in self._fields.items())
        return f"Instances(num_instances={len(self)}, image_height={self._image_size[0]}, image_width={self._image_size[1]}, fields=[{fields}])"
