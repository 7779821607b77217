"""nn.Modules of UniAD Bench: backbone features, UniAD and the baselines, losses and anomaly maps."""
