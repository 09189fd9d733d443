"""A process and its descendants, read from /proc (Linux): the benchmarks that sum memory over
a run's processes (round_time.py, image_memory.py)."""

from __future__ import annotations

from pathlib import Path


def process_tree(pid: int) -> set[int]:
    """``pid`` and every process below it (children, their children, ...)."""
    children: dict[int, list[int]] = {}
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                ppid = int((proc / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(proc.name))
    tree, stack = {pid}, [pid]
    while stack:
        for child in children.get(stack.pop(), []):
            tree.add(child)
            stack.append(child)
    return tree
