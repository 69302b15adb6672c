"""Data for training: LLaVA conversation JSON -> validated records -> token ids, labels, pixels."""

from decovlm.data.collator import DataCollator
from decovlm.data.dataset import ConversationDataset
from decovlm.data.records import BadRecord, Record, SkipLog, load_records
from decovlm.data.templates import IGNORE_INDEX, SegmentEncoder, encode_conversation

__all__ = [
    "IGNORE_INDEX",
    "BadRecord",
    "ConversationDataset",
    "DataCollator",
    "Record",
    "SegmentEncoder",
    "SkipLog",
    "encode_conversation",
    "load_records",
]
