"""From sources to feature vectors: the feature-extractor registry (`registry`) and its networks
(`inception`; `lpips` for image-pair distances), their sha256-pinned weights (`weights`), the
extraction runner (`features`, sharded under torchrun by `distributed`), the feature cache
(`cache`) and the per-source bundle every metric takes (`featureset`)."""
