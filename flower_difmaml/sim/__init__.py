"""Graphs, combination matrices, experiment runner and reports (the graph math imports no Flower)."""
