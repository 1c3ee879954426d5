"""The model and everything that runs it: T5 with pooling and projection, the losses, training,
several processes, generation and reranking, and offers for new personas."""
