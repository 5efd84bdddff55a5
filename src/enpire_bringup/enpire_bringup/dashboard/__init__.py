"""``enpire dashboard``: a live, local web view of the cells and the experiment they serve."""
