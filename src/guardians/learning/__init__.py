"""Machine learning: data, preprocessing, partitioning, models, training, aggregation, metrics."""
