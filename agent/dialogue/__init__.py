"""The deterministic brain: a state machine over a persisted chat session.

Modules: `machine` (the slot-filling state machine, `Dialogue` and `respond`), `commands` (the
command handlers tried first in every state), `confirm` (the summary, the answer to it, the
launch), `answers` (yes / no / not yet in natural words), `base` (`Turn`, the helpers all use),
`patterns` (the words and regular expressions). See `docs/architecture.md`.

States (``ChatSession.state``)::

    idle        nothing asked; a training request starts `collecting`
    collecting  a TrainingIntent is being completed; `pending` names the slot asked for
                (dataset, task, model, epochs, or fix_compat after an incompatible dataset)
    confirming  the summary was shown; waiting for yes / no / a correction
    launched    a job was started (`job_ids`); questions about it are answered, a new request
                starts `collecting` again

One turn (`respond`):

1. yes / no / not yet while confirming, in natural words ("응 해줘", "좋아 시작해", "go ahead";
   "아니", "don't start"; "잠깐만", "not yet": nothing launched, still confirming), unless the
   message carries slots ("yes but with 2 epochs" is a correction, confirmed again); "cancel"
   while collecting drops the request;
2. questions and commands, in any state: help, "what models can I use?", "what datasets do I
   have?", "can I train detection on digits?", "test it on this image", "show metrics",
   "how is it going?", "stop it", "resume job 15" (a reminder of the pending question follows);
3. an answer to the pending question (a bare dataset name, a number from the suggestions, "yes"
   to a proposed default, a bare number of epochs);
4. a training request or a correction: `extract_slots` of the message merged into the intent
   ("에폭은 30으로", "use yolo11s instead" — a new model drops the old model's task/framework);
5. then the next missing slot is asked, ONE question at a time with concrete suggestions, in the
   order dataset, task (when neither the model nor the dataset's labels imply it), model (the
   task's default and why), epochs (the preset's default, said to be a default), and finally the
   confirmation summary from `tools.jobs.create_job(..., launch=False)` (the preset resolved into
   hyper-parameters by the adapter, "a snapshot will be taken at launch", an estimated duration).

Every tools call runs as the chat's user (`ToolContext`), so a dataset the user may not see is
"not found" exactly like REST. Replies are in the language of the message (`detect_language`; a
lone name or number keeps the conversation's language).

Duration estimate: `tools.estimates.estimate_duration` (a range from the measured speed of earlier
jobs of the same kind on this machine, else scaled from other jobs or a calibrated prior), with
what it is based on, in the summary (``estimate``) and the reply.
"""

from agent.dialogue.base import STATES, Turn, intent_dict, is_no, is_wait, is_yes
from agent.dialogue.machine import Dialogue, respond
from agent.dialogue.patterns import FORMAT_NAMES, export_format

__all__ = [
    "FORMAT_NAMES",
    "STATES",
    "Dialogue",
    "Turn",
    "export_format",
    "intent_dict",
    "is_no",
    "is_wait",
    "is_yes",
    "respond",
]
