"""Dataset code: the MVTec AD layout reader, CIFAR-10 many-versus-many and the offline synthetic generator."""
