"""flower-difmaml: decentralized meta-learning (Dif-MAML) and its comparisons as a Flower app."""
