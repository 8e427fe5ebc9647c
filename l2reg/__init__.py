"""l2reg: training dynamics of deep networks with L2 regularization."""
