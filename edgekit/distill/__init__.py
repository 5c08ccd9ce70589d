"""Knowledge distillation: the training loop, logit, feature and attention-map losses, curriculum, torchrun processes."""
