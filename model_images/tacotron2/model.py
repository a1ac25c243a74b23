"""Tacotron 2 (Shen et al. 2018): characters to mel spectrogram frames, one frame per step.

As NVIDIA's reference implementation (github.com/NVIDIA/tacotron2) builds it: a character
embedding, a convolutional encoder with a bidirectional LSTM, location-sensitive attention, an
autoregressive two-LSTM decoder fed through a prenet whose dropout is always on, a linear
projection to the mel frame and its stop token, and a convolutional post-net that adds a
residual. The default arguments are NVIDIA's hyperparameters (28,193,153 parameters).
"""

import itertools
import math

import torch
import torch.nn.functional as F
from torch import nn


def xavier(layer: nn.Module, gain: str = "linear") -> nn.Module:
    """NVIDIA's LinearNorm / ConvNorm: Xavier-uniform weights scaled for the next nonlinearity."""
    nn.init.xavier_uniform_(layer.weight, gain=nn.init.calculate_gain(gain))
    return layer


def conv_bn(in_ch: int, out_ch: int, kernel: int, gain: str) -> nn.Sequential:
    conv = nn.Conv1d(in_ch, out_ch, kernel, padding=(kernel - 1) // 2)
    return nn.Sequential(xavier(conv, gain), nn.BatchNorm1d(out_ch))


class Encoder(nn.Module):
    """Convolutions (BN, ReLU, dropout 0.5) over the embedded characters, then a BiLSTM."""

    def __init__(self, dim: int, n_convs: int, kernel: int) -> None:
        super().__init__()
        self.convs = nn.ModuleList(conv_bn(dim, dim, kernel, "relu") for _ in range(n_convs))
        self.lstm = nn.LSTM(dim, dim // 2, batch_first=True, bidirectional=True)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        for conv in self.convs:
            x = F.dropout(F.relu(conv(x)), 0.5, self.training)
        # packed, so that the backward direction starts at each text's own last character
        packed = nn.utils.rnn.pack_padded_sequence(
            x.transpose(1, 2), lengths.cpu(), batch_first=True, enforce_sorted=False
        )
        out, _ = self.lstm(packed)
        out, _ = nn.utils.rnn.pad_packed_sequence(out, batch_first=True, total_length=x.size(2))
        return out


class Attention(nn.Module):
    """Location-sensitive attention (Chorowski et al. 2015): additive attention that also sees
    convolutional features of the previous and the cumulative alignment."""

    def __init__(self, query_dim: int, memory_dim: int, dim: int, filters: int, kernel: int):
        super().__init__()
        self.query_layer = xavier(nn.Linear(query_dim, dim, bias=False), "tanh")
        self.memory_layer = xavier(nn.Linear(memory_dim, dim, bias=False), "tanh")
        self.v = xavier(nn.Linear(dim, 1, bias=False))
        self.location_conv = xavier(
            nn.Conv1d(2, filters, kernel, padding=(kernel - 1) // 2, bias=False)
        )
        self.location_dense = xavier(nn.Linear(filters, dim, bias=False), "tanh")

    def forward(
        self,
        query: torch.Tensor,  # (B, query_dim)
        memory: torch.Tensor,  # (B, N, memory_dim)
        processed_memory: torch.Tensor,  # memory_layer(memory), computed once per utterance
        weights_cat: torch.Tensor,  # (B, 2, N): previous and cumulative weights
        pad: torch.Tensor,  # (B, N), True on padding characters
    ) -> tuple[torch.Tensor, torch.Tensor]:
        location = self.location_dense(self.location_conv(weights_cat).transpose(1, 2))
        query = self.query_layer(query)[:, None]
        energies = self.v(torch.tanh(query + location + processed_memory))
        weights = F.softmax(energies.squeeze(2).masked_fill(pad, -math.inf), dim=1)
        context = torch.bmm(weights[:, None], memory).squeeze(1)
        return context, weights


class Decoder(nn.Module):
    """Autoregressive decoder, teacher-forced: frame t is predicted from frames < t."""

    def __init__(
        self,
        n_mel: int,
        memory_dim: int,
        prenet_dim: int,
        rnn_dim: int,
        attention_dim: int,
        location_filters: int,
        location_kernel: int,
        p_attention_dropout: float,
        p_decoder_dropout: float,
    ) -> None:
        super().__init__()
        self.rnn_dim, self.p_att, self.p_dec = rnn_dim, p_attention_dropout, p_decoder_dropout
        self.prenet = nn.ModuleList(
            [
                xavier(nn.Linear(n_mel, prenet_dim, bias=False)),
                xavier(nn.Linear(prenet_dim, prenet_dim, bias=False)),
            ]
        )
        self.attention_rnn = nn.LSTMCell(prenet_dim + memory_dim, rnn_dim)
        self.attention = Attention(
            rnn_dim, memory_dim, attention_dim, location_filters, location_kernel
        )
        self.decoder_rnn = nn.LSTMCell(rnn_dim + memory_dim, rnn_dim)
        self.projection = xavier(nn.Linear(rnn_dim + memory_dim, n_mel))
        self.gate = xavier(nn.Linear(rnn_dim + memory_dim, 1), "sigmoid")

    def forward(
        self, memory: torch.Tensor, mels: torch.Tensor, pad: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """memory (B, N, D), mels (B, n_mel, T) -> frames (B, n_mel, T), gate logits (B, T),
        alignments (B, T, N)."""
        b, n = pad.shape
        go = mels.new_zeros(b, mels.size(1), 1)  # the all-zero <GO> frame
        x = torch.cat([go, mels[:, :, :-1]], 2).transpose(1, 2)
        for linear in self.prenet:  # dropout in evaluation too: variety at inference (paper)
            x = F.dropout(F.relu(linear(x)), 0.5, training=True)
        processed_memory = self.attention.memory_layer(memory)
        h_att = c_att = h_dec = c_dec = memory.new_zeros(b, self.rnn_dim, dtype=torch.float32)
        weights = weights_cum = memory.new_zeros(b, n, dtype=torch.float32)
        context = memory.new_zeros(b, memory.size(2), dtype=torch.float32)
        outputs, alignments = [], []
        for t in range(mels.size(2)):
            h_att, c_att = self.attention_rnn(torch.cat([x[:, t], context], 1), (h_att, c_att))
            h_att = F.dropout(h_att, self.p_att, self.training)
            weights_cat = torch.stack([weights, weights_cum], 1)
            context, weights = self.attention(h_att, memory, processed_memory, weights_cat, pad)
            weights_cum = weights_cum + weights
            h_dec, c_dec = self.decoder_rnn(torch.cat([h_att, context], 1), (h_dec, c_dec))
            h_dec = F.dropout(h_dec, self.p_dec, self.training)
            outputs.append(torch.cat([h_dec, context], 1))
            alignments.append(weights)
        # the projections are per frame: one matrix product after the loop is the same maths
        out = torch.stack(outputs, 1)
        frames, gate = self.projection(out).transpose(1, 2), self.gate(out).squeeze(2)
        return frames, gate, torch.stack(alignments, 1)


class Postnet(nn.Module):
    """Convolutions (BN, tanh but the last, dropout 0.5) predicting a residual for the frames."""

    def __init__(self, n_mel: int, dim: int, n_convs: int, kernel: int) -> None:
        super().__init__()
        chans = [n_mel] + [dim] * (n_convs - 1) + [n_mel]
        self.convs = nn.ModuleList(
            conv_bn(i, o, kernel, "tanh" if k < n_convs - 1 else "linear")
            for k, (i, o) in enumerate(itertools.pairwise(chans))
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for conv in self.convs[:-1]:
            x = F.dropout(torch.tanh(conv(x)), 0.5, self.training)
        return F.dropout(self.convs[-1](x), 0.5, self.training)


class Tacotron2(nn.Module):
    def __init__(
        self,
        n_symbols: int = 148,  # NVIDIA's symbol set: padding, punctuation, letters, ARPAbet
        embedding_dim: int = 512,
        encoder_convs: int = 3,
        encoder_kernel: int = 5,
        n_mel: int = 80,
        prenet_dim: int = 256,
        rnn_dim: int = 1024,  # both decoder LSTMs
        attention_dim: int = 128,
        location_filters: int = 32,
        location_kernel: int = 31,
        postnet_convs: int = 5,
        postnet_dim: int = 512,
        postnet_kernel: int = 5,
        p_attention_dropout: float = 0.1,
        p_decoder_dropout: float = 0.1,
    ) -> None:
        super().__init__()
        self.embedding = nn.Embedding(n_symbols, embedding_dim)
        bound = math.sqrt(3) * math.sqrt(2 / (n_symbols + embedding_dim))
        nn.init.uniform_(self.embedding.weight, -bound, bound)
        self.encoder = Encoder(embedding_dim, encoder_convs, encoder_kernel)
        self.decoder = Decoder(
            n_mel,
            embedding_dim,
            prenet_dim,
            rnn_dim,
            attention_dim,
            location_filters,
            location_kernel,
            p_attention_dropout,
            p_decoder_dropout,
        )
        self.postnet = Postnet(n_mel, postnet_dim, postnet_convs, postnet_kernel)

    def forward(
        self,
        text: torch.Tensor,  # (B, N) symbol ids, 0-padded
        text_lengths: torch.Tensor,  # (B,)
        mels: torch.Tensor,  # (B, n_mel, T) target frames, 0-padded: teacher forcing
        mel_lengths: torch.Tensor,  # (B,)
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Decoder frames and post-net frames (B, n_mel, T), stop-token logits (B, T) and
        alignments (B, T, N); padding frames are 0 and their stop logits are large (NVIDIA's
        mask_padding)."""
        n = torch.arange(text.size(1), device=text.device)
        memory = self.encoder(self.embedding(text).transpose(1, 2), text_lengths)
        frames, gate, alignments = self.decoder(memory, mels, n >= text_lengths[:, None])
        postnet = frames + self.postnet(frames)
        pad = torch.arange(mels.size(2), device=mels.device) >= mel_lengths[:, None]
        frames = frames.masked_fill(pad[:, None], 0)
        postnet = postnet.masked_fill(pad[:, None], 0)
        return frames, postnet, gate.masked_fill(pad, 1e3), alignments
