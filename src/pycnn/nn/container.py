"""The containers: Identity, Sequential, Residual (y = block(x) + shortcut(x)) and Concat."""
from __future__ import annotations

import operator
from collections import OrderedDict
from typing import Any, Iterator, Optional, Tuple

import numpy as np

from .. import functional as F
from ..tensor import Tensor
from ._passes import takes_need_input_grad
from .module import Module

__all__ = ["Identity", "Sequential", "Residual", "Concat", "ModuleList", "ModuleDict"]


class Identity(Module):
    """Returns its input; backward returns the gradient unchanged."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__()

    def forward(self, x: Any) -> Any:
        return self._input(x)

    def backward(self, grad_output: Any) -> Any:
        return grad_output


class Sequential(Module):
    """Layers run in order; backward runs them in reverse. ``Sequential(*layers)`` names them
    "0", "1", ...; ``Sequential(OrderedDict(name=layer))`` keeps the names. Indexing (negative
    too), slicing (a Sequential sharing the layers), ``model[i] = layer``, ``del model[i]``,
    ``len``, iteration, ``append``, ``extend``, ``insert``."""

    def __init__(self, *args: Any) -> None:
        super().__init__()
        if len(args) == 1 and isinstance(args[0], (OrderedDict, dict)):
            for name, m in args[0].items():
                self._add(str(name), m)
        else:
            for i, m in enumerate(args):
                self._add(str(i), m)

    def _add(self, name: str, m: Any) -> None:
        if not isinstance(m, Module):
            raise TypeError(f"Sequential: {type(m).__name__} is not an nn.Module (layer {name!r})")
        self.add_module(name, m)

    def _index(self, idx: Any) -> int:
        if not isinstance(idx, (int, np.integer)) or isinstance(idx, bool):
            raise TypeError(f"Sequential indices must be integers or slices, not {type(idx).__name__}")
        n = len(self._modules)
        i = operator.index(idx)
        if not -n <= i < n:
            raise IndexError(f"index {idx} is out of range for a Sequential of {n} layers")
        return i % n

    def __getitem__(self, idx: Any) -> Any:
        if isinstance(idx, slice):
            return Sequential(OrderedDict(list(self._modules.items())[idx]))
        if isinstance(idx, str):
            return self._modules[idx]
        return list(self._modules.values())[self._index(idx)]

    def __setitem__(self, idx: Any, module: Module) -> None:
        if not isinstance(module, Module):
            raise TypeError(f"Sequential: {type(module).__name__} is not an nn.Module")
        key = list(self._modules.keys())[self._index(idx)]
        self._modules[key] = module

    def __delitem__(self, idx: Any) -> None:
        keys = list(self._modules.keys())
        if isinstance(idx, slice):
            for k in keys[idx]:
                del self._modules[k]
        else:
            del self._modules[keys[self._index(idx)]]
        # PyTorch renumbers to keep numeric names contiguous
        items = list(self._modules.items())
        if all(k.isdigit() for k, _ in items):
            self._modules.clear()
            for i, (_, m) in enumerate(items):
                self._modules[str(i)] = m

    def __len__(self) -> int:
        return len(self._modules)

    def __iter__(self) -> Iterator[Module]:
        return iter(list(self._modules.values()))

    def __reversed__(self) -> Iterator[Module]:
        return iter(list(self._modules.values())[::-1])

    def _next_name(self) -> str:
        n = len(self._modules)
        while str(n) in self._modules:
            n += 1
        return str(n)

    def append(self, module: Module) -> "Sequential":
        self._add(self._next_name(), module)
        return self

    def extend(self, modules: Any) -> "Sequential":
        for m in modules:
            self.append(m)
        return self

    def insert(self, index: int, module: Module) -> "Sequential":
        if not isinstance(module, Module):
            raise TypeError(f"Sequential: {type(module).__name__} is not an nn.Module")
        n = len(self._modules)
        if not -n <= index <= n:
            raise IndexError(f"index {index} is out of range for a Sequential of {n} layers")
        index = index % n if n and index != n else index
        items = list(self._modules.values())
        items.insert(index, module)
        self._modules.clear()
        for i, m in enumerate(items):
            self._modules[str(i)] = m
        return self

    def forward(self, x: Any) -> Any:
        for m in self._modules.values():
            x = m(x)
        return x

    def backward(self, grad_output: Any, need_input_grad: bool = True) -> Any:
        """Runs the layers' backward in reverse and returns d/dx of the input. With
        ``need_input_grad=False`` (a training step, where nobody reads it) it returns None, and the
        first layer skips computing it if it can (Conv2d, Linear, Sequential): for LeNet-5 that is
        the first convolution's whole col2im pass."""
        mods = list(self._modules.values())
        g = grad_output
        for i in range(len(mods) - 1, 0, -1):
            g = mods[i].backward(g)
        if not mods:
            return g if need_input_grad else None
        if not need_input_grad and takes_need_input_grad(mods[0]):
            return mods[0].backward(g, need_input_grad=False)
        g = mods[0].backward(g)
        return g if need_input_grad else None


class Residual(Module):
    """y = block(x) + shortcut(x), the shortcut being the identity when None (ResNet).
    backward = block.backward(g) + shortcut.backward(g) (or + g).

    A block that keeps its layers under names of its own (ResNet's BasicBlock, with torchvision's)
    subclasses Residual and overrides the pair ``_branches`` / ``_branches_backward``; the shape
    check, the cache and the sum stay here."""

    def __init__(self, block: Module, shortcut: Optional[Module] = None) -> None:
        super().__init__()
        if not isinstance(block, Module):
            raise TypeError(f"Residual: block must be an nn.Module, got {type(block).__name__}")
        if shortcut is not None and not isinstance(shortcut, Module):
            raise TypeError(f"Residual: shortcut must be an nn.Module or None, got {type(shortcut).__name__}")
        self.block = block
        self.shortcut = shortcut
        self._cached = False

    _cache_attrs = ("_cached",)

    def _branches(self, x: Tensor) -> Tuple[Tensor, Tensor]:
        """(block(x), shortcut(x))."""
        return self.block(x), (x if self.shortcut is None else self.shortcut(x))

    def _branches_backward(self, g: Tensor) -> Tuple[Tensor, Tensor]:
        """The input gradients of the two branches, in the reverse order of ``_branches``."""
        return self.block.backward(g), (g if self.shortcut is None else self.shortcut.backward(g))

    def forward(self, x: Any) -> Tensor:
        x = self._input(x)
        y, s = self._branches(x)
        if tuple(y.shape) != tuple(s.shape):
            raise ValueError(f"{type(self).__name__}: the block's output {tuple(y.shape)} and the shortcut's output "
                             f"{tuple(s.shape)} must have the same shape (input {tuple(x.shape)}); "
                             "use a projection shortcut")
        self._cached = True
        return self._call_core(F.add, y, s)

    def backward(self, grad_output: Any) -> Tensor:
        if not self._cached:
            raise self._no_cache()
        self._cached = False
        gb, gs = self._branches_backward(self._input(grad_output))
        return self._call_core(F.add, gb, gs)


class Concat(Module):
    """Runs every branch on the same input and concatenates their outputs along `dim`
    (Inception, DenseNet); backward splits the gradient and sums the branches' input gradients."""

    def __init__(self, *branches: Module, dim: int = 1) -> None:
        super().__init__()
        if len(branches) == 1 and isinstance(branches[0], (OrderedDict, dict)):
            items = list(branches[0].items())
        else:
            items = [(str(i), b) for i, b in enumerate(branches)]
        if not items:
            raise ValueError("Concat: needs at least one branch")
        for name, b in items:
            if not isinstance(b, Module):
                raise TypeError(f"Concat: branch {name!r} is a {type(b).__name__}, not an nn.Module")
            self.add_module(str(name), b)
        if not isinstance(dim, (int, np.integer)) or isinstance(dim, bool):
            raise TypeError(f"Concat: dim must be an int, got {dim!r}")
        self.dim = int(dim)
        self._sizes: Optional[list] = None

    _cache_attrs = ("_sizes", "_d")

    def extra_repr(self) -> str:
        return f"dim={self.dim}"

    def __len__(self) -> int:
        return len(self._modules)

    def __getitem__(self, idx: int) -> Module:
        return list(self._modules.values())[idx]

    def __iter__(self) -> Iterator[Module]:
        return iter(list(self._modules.values()))

    def forward(self, x: Any) -> Tensor:
        x = self._input(x)
        outs = [b(x) for b in self._modules.values()]
        nd = len(outs[0].shape)
        d = self.dim + nd if self.dim < 0 else self.dim
        if not 0 <= d < nd:
            raise ValueError(f"{self._name()}: dim {self.dim} out of range for branch outputs of rank {nd}")
        shapes = [tuple(o.shape) for o in outs]
        for s in shapes:
            if len(s) != nd or s[:d] + s[d + 1:] != shapes[0][:d] + shapes[0][d + 1:]:
                raise ValueError(f"{self._name()}: branch outputs must agree in every dimension but {self.dim}, "
                                 f"got {shapes}")
        y = self._call_core(F.concat, outs, d)
        self._sizes = [s[d] for s in shapes]
        self._d = d
        return y

    def backward(self, grad_output: Any) -> Tensor:
        if self._sizes is None:
            raise self._no_cache()
        sizes, self._sizes = self._sizes, None
        parts = self._call_core(F.split, self._input(grad_output), sizes, self._d)
        dx = None
        for b, g in zip(self._modules.values(), parts):
            gi = b.backward(g)
            dx = gi if dx is None else self._call_core(F.add, dx, gi)
        return dx


class ModuleList(Module):
    """torch.nn.ModuleList: a list of layers whose parameters the parent registers ("0", "1", ...).
    It has no forward: the parent's forward calls its layers (autograd traces it)."""

    def __init__(self, modules: Optional[Any] = None) -> None:
        super().__init__()
        self.extend(modules if modules is not None else [])

    def _check(self, m: Any) -> Module:
        if not isinstance(m, Module):
            raise TypeError(f"ModuleList: {type(m).__name__} is not an nn.Module")
        return m

    def _renumber(self, layers: list) -> None:
        checked = [self._check(m) for m in layers]
        self._modules.clear()
        self._modules.update((str(i), m) for i, m in enumerate(checked))

    def __getitem__(self, idx: Any) -> Any:
        layers = list(self._modules.values())
        return ModuleList(layers[idx]) if isinstance(idx, slice) else layers[operator.index(idx)]

    def __setitem__(self, idx: int, module: Module) -> None:
        layers = list(self._modules.values())
        layers[operator.index(idx)] = module
        self._renumber(layers)

    def __delitem__(self, idx: Any) -> None:
        layers = list(self._modules.values())
        del layers[idx]
        self._renumber(layers)

    def __len__(self) -> int:
        return len(self._modules)

    def __iter__(self) -> Iterator[Module]:
        return iter(list(self._modules.values()))

    def append(self, module: Module) -> "ModuleList":
        self.add_module(str(len(self._modules)), self._check(module))
        return self

    def extend(self, modules: Any) -> "ModuleList":
        for m in modules:
            self.append(m)
        return self

    def insert(self, index: int, module: Module) -> None:
        layers = list(self._modules.values())
        layers.insert(index, module)
        self._renumber(layers)


class ModuleDict(Module):
    """torch.nn.ModuleDict: layers by name, registered under those names; no forward of its own."""

    def __init__(self, modules: Optional[Any] = None) -> None:
        super().__init__()
        self.update(modules if modules is not None else {})

    def __getitem__(self, key: str) -> Module:
        return self._modules[key]

    def __setitem__(self, key: str, module: Module) -> None:
        if not isinstance(module, Module):
            raise TypeError(f"ModuleDict: {type(module).__name__} is not an nn.Module (key {key!r})")
        self.add_module(key, module)

    def __delitem__(self, key: str) -> None:
        del self._modules[key]

    def __len__(self) -> int:
        return len(self._modules)

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._modules))

    def __contains__(self, key: str) -> bool:
        return key in self._modules

    def keys(self) -> Any:
        return self._modules.keys()

    def items(self) -> Any:
        return self._modules.items()

    def values(self) -> Any:
        return self._modules.values()

    def update(self, modules: Any) -> None:
        for key, m in (modules.items() if hasattr(modules, "items") else modules):
            self[key] = m
