"""From sources to feature vectors: the feature-extractor registry (`registry`) and its networks
(`inception`; `dinov2` and `clip`, built with timm by `timm_vit`; `lpips` for image-pair distances),
their preprocessing (`resize`, clean-fid's; `resize_uint8`, PIL's uint8 bicubic on torch), their
sha256-pinned weights (`weights`), the extraction runner (`features`, sharded under torchrun by
`distributed`), the feature cache (`cache`) and the per-source bundle every metric takes
(`featureset`)."""
