"""Make the project's spoken-sentence clips with espeak-ng: zoo/samples/speech/*.flac and manifest.json.

The clips are synthetic speech this project made (espeak-ng, GPL-3.0 program; its output is
ours to ship), used by the Whisper tests, the speech retrieval evaluations and the demo
gallery. Each clip has its sentence and a paraphrase that says the same thing in other
words, for text->speech retrieval by meaning rather than by exact wording.

    python scripts/make_speech.py            # needs Debian's espeak-ng (apt-get install espeak-ng)

The files are committed, so nothing else needs espeak-ng; rerun this only to change them.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

import soundfile as sf

OUT = Path(__file__).resolve().parent.parent / "zoo" / "samples" / "speech"
VOICE, SPEED = "en-us", 150  # words per minute

CLIPS = [
    ("weather", "It is going to rain heavily tomorrow afternoon.",
     "expect a lot of rainfall later tomorrow"),
    ("train", "The last train to the city leaves at midnight.",
     "the final rail departure downtown is at twelve at night"),
    ("coffee", "Please bring me a hot cup of black coffee.",
     "I would like a warm mug of coffee without milk"),
    ("dog", "My dog loves to chase the ball in the park.",
     "the puppy enjoys running after a ball outdoors"),
    ("meeting", "The budget meeting has been moved to Friday morning.",
     "the finance discussion is rescheduled for the end of the week"),
    ("library", "The library closes early on public holidays.",
     "on bank holidays the place with the books shuts sooner"),
    ("doctor", "You should see a doctor about that cough.",
     "get your persistent coughing checked by a physician"),
    ("keys", "I cannot find my car keys anywhere.",
     "my vehicle keys are lost"),
    ("birthday", "We are planning a surprise party for her birthday.",
     "a secret celebration is being organised for her special day"),
    ("garden", "The tomatoes in the garden are finally ripe.",
     "the vegetables we grew outside are ready to pick"),
    ("flight", "Our flight was delayed by three hours because of fog.",
     "the plane left late due to poor visibility"),
    ("python", "This function returns the sum of two numbers.",
     "the code adds a pair of values together"),
]


def speak(text: str, wav: Path) -> None:
    subprocess.run(["espeak-ng", "-v", VOICE, "-s", str(SPEED), "-w", str(wav), text], check=True)


def main() -> int:
    OUT.mkdir(parents=True, exist_ok=True)
    version = subprocess.run(["espeak-ng", "--version"], capture_output=True, text=True, check=True).stdout.strip()
    manifest = {"generator": version, "voice": VOICE, "words_per_minute": SPEED, "clips": []}
    with tempfile.TemporaryDirectory() as tmp:
        for name, text, paraphrase in CLIPS:
            wav = Path(tmp) / f"{name}.wav"
            speak(text, wav)
            samples, rate = sf.read(wav, dtype="int16")
            sf.write(OUT / f"{name}.flac", samples, rate, subtype="PCM_16")
            manifest["clips"].append({"file": f"{name}.flac", "text": text, "paraphrase": paraphrase,
                                      "seconds": round(len(samples) / rate, 2), "sample_rate": rate})
            print(f"{name}.flac  {len(samples) / rate:.2f} s  {text}")
    (OUT / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
