"""Neural recommenders: towers of encoders and fusion, a scorer, one training loop.

- :class:`HybridRecommender`: item text (frozen language-model vectors), ids and
  features fused, users from their histories; cold items via ``add_items``, cold users
  via ``recommend(history=...)``.
- :class:`NeuMF`: neural collaborative filtering (GMF + MLP) on the same machinery.
- :class:`SequentialRecommender`: a GPT-style causal transformer over each user's item
  sequence (SASRec-style next-item prediction).
- :class:`MultVAE`: a multinomial variational autoencoder over each user's item set
  (Liang et al. 2018); a new user's history is folded in by the encoder.
- :class:`RecVAE`: Mult-VAE with a composite prior, alternating encoder/decoder updates
  and a KL weight from each user's count (Shenbin et al. 2020).
- :class:`BERT4Rec`: a bidirectional transformer trained as a cloze task over each
  user's item sequence (Sun et al. 2019).
- :class:`LightGCN`: embeddings smoothed over the user-item graph (He et al. 2020).
"""

from .bert4rec import BERT4Rec
from .hybrid import HybridRecommender, NeuMF
from .lightgcn import LightGCN
from .recvae import RecVAE
from .sequential import SequentialRecommender
from .vae import MultVAE

__all__ = ["BERT4Rec", "HybridRecommender", "LightGCN", "MultVAE", "NeuMF", "RecVAE",
           "SequentialRecommender"]
