"""In-browser trial component (design.presentation = "timed"), built on st.components.v2.

Streamlit draws from the server, so it cannot time what the participant sees. This component does
the timing in the browser: the images (two in the paired design, one in the single-image design)
are preloaded and decoded, attached on the same animation frame, optionally hidden after
`exposure_ms` (then a noise mask for `mask_ms`), and the response time is measured with
performance.now() from the first frame the trial was on screen. Window blur and tab switches during
the trial are counted. With a minimum window size (design.min_window_width / _height) a trial does
not start, images hidden and buttons disabled, until the window is large enough (checked on
`resize`). One answer per trial: the component locks itself after the first click or key press,
and the server still accepts only the current trial.

A second, invisible component (`answer_keys`) gives the single design's Streamlit buttons the R and
G keys: st.button takes one shortcut per button, and Streamlit reserves R for itself.
"""
from __future__ import annotations

import base64

import streamlit as st

_MIME = {"PNG": "image/png", "JPEG": "image/jpeg", "WEBP": "image/webp", "BMP": "image/bmp", "GIF": "image/gif"}

_CSS = """
.study-pair .imgs { display: flex; gap: 2rem; justify-content: center; }
.study-pair figure { margin: 0; flex: 1 1 0; display: flex; flex-direction: column; gap: .75rem; }
.study-pair .slot { aspect-ratio: 1 / 1; width: 100%; background: var(--st-secondary-background-color, #f0f2f6);
  display: flex; align-items: center; justify-content: center; overflow: hidden; border-radius: .5rem; }
.study-pair .slot img, .study-pair .slot canvas { width: 100%; height: 100%; object-fit: contain; image-rendering: auto; }
.study-pair button { font: inherit; padding: .6rem 1rem; border-radius: .5rem; border: none; cursor: pointer;
  background: var(--st-primary-color, #ff4b4b); color: white; }
.study-pair button:disabled { opacity: .45; cursor: default; }
.study-pair .status { text-align: center; min-height: 1.5em; color: var(--st-text-color, #31333f); opacity: .7; }
.study-pair .imgs.single figure { flex: 0 1 28rem; }
.study-pair .choices { display: flex; gap: 1rem; justify-content: center; margin-top: .75rem; }
.study-pair .choices button { flex: 0 1 12rem; }
.study-pair.too-small .status { opacity: 1; font-weight: 600; color: var(--st-red-color, #ff2b2b); }
"""

_JS = """
export default function (component) {
  const { data, setTriggerValue, parentElement } = component;
  const existing = parentElement.querySelector('.study-pair');
  // Reruns re-invoke this function; the same trial must keep its clock and its one answer.
  // Streamlit keeps only the latest call's cleanup, so a rerun hands back the one of the first call.
  if (existing && existing.dataset.trial === String(data.trial)) return existing.studyCleanup;
  if (existing) existing.remove();

  // Paired: one answer button under each image. Single: one image, the answer buttons in a row below.
  const paired = data.images.length === data.choices.length;
  const button = (c) => `<button type="button" data-answer="${c.value}" disabled>${c.label}</button>`;
  const box = document.createElement('div');
  box.className = 'study-pair';
  box.dataset.trial = String(data.trial);
  box.innerHTML = (paired
    ? `<div class="imgs">${data.images.map((_, i) =>
        `<figure><div class="slot" data-slot="${i}"></div>${button(data.choices[i])}</figure>`).join('')}</div>`
    : `<div class="imgs single">${data.images.map((_, i) =>
        `<figure><div class="slot" data-slot="${i}"></div></figure>`).join('')}</div>
       <div class="choices">${data.choices.map(button).join('')}</div>`)
    + `<p class="status">${data.loading}</p>`;
  parentElement.appendChild(box);
  const slots = [...box.querySelectorAll('.slot')];
  const buttons = [...box.querySelectorAll('button')];
  const status = box.querySelector('.status');
  const keys = {};
  data.choices.forEach((c) => c.keys.forEach((k) => { keys[k] = c.value; }));

  let shownAt = null, hiddenAt = null, answered = false, focusLosses = 0;
  const onBlur = () => { if (shownAt !== null && !answered) focusLosses += 1; };
  const onVisibility = () => { if (document.hidden) onBlur(); };

  const answer = (value) => {
    if (answered || shownAt === null) return;
    answered = true;
    const now = performance.now();
    buttons.forEach((b) => { b.disabled = true; });
    status.textContent = 'Saving…';
    setTriggerValue('answer', {
      trial: data.trial, answer: value, rt_ms: now - shownAt,
      exposure_ms: (hiddenAt === null ? now : hiddenAt) - shownAt,
      focus_losses: focusLosses, window: `${window.innerWidth}x${window.innerHeight}`,
    });
  };
  const onKey = (event) => {
    if (event.repeat || !(event.key in keys)) return;
    event.preventDefault();
    event.stopImmediatePropagation();   // R would also make Streamlit rerun the page
    answer(keys[event.key]);
  };
  buttons.forEach((b) => b.addEventListener('click', () => answer(b.dataset.answer)));
  window.addEventListener('blur', onBlur);
  document.addEventListener('visibilitychange', onVisibility);
  window.addEventListener('keydown', onKey, true);

  const mask = () => {
    const canvas = document.createElement('canvas');
    canvas.width = 16; canvas.height = 16;
    const ctx = canvas.getContext('2d');
    for (let y = 0; y < 16; y++) for (let x = 0; x < 16; x++) {
      const v = Math.floor(Math.random() * 256);
      ctx.fillStyle = `rgb(${v},${Math.floor(Math.random() * 256)},${255 - v})`;
      ctx.fillRect(x, y, 1, 1);
    }
    canvas.style.imageRendering = 'pixelated';
    return canvas;
  };
  const load = (src) => new Promise((resolve, reject) => {
    const img = new Image();
    img.onload = () => (img.decode ? img.decode().then(() => resolve(img), () => resolve(img)) : resolve(img));
    img.onerror = reject;
    img.src = src;
  });

  // Minimum window (0 = no limit): the trial, and its clock, start only once the window is large enough.
  const minW = data.min_width || 0, minH = data.min_height || 0;
  const bigEnough = () => window.innerWidth >= minW && window.innerHeight >= minH;
  const tooSmall = () => {
    const need = minW && minH ? `${minW}×${minH} px` : minW ? `${minW} px wide` : `${minH} px tall`;
    return `Please enlarge your browser window to at least ${need} `
      + `(it is now ${window.innerWidth}×${window.innerHeight}). The trial starts as soon as it is large enough.`;
  };
  let onResize = null;
  const whenBigEnough = (start) => {
    if (bigEnough()) { start(); return; }
    box.classList.add('too-small');
    status.textContent = tooSmall();
    onResize = () => {
      if (!box.isConnected) return;
      if (!bigEnough()) { status.textContent = tooSmall(); return; }
      window.removeEventListener('resize', onResize);
      onResize = null;
      box.classList.remove('too-small');
      status.textContent = data.loading;
      start();
    };
    window.addEventListener('resize', onResize);
  };

  Promise.all(data.images.map(load)).then((images) => whenBigEnough(() => {
    requestAnimationFrame(() => {
      images.forEach((img, i) => slots[i].appendChild(img));
      requestAnimationFrame(() => {            // the frame with every image has been painted
        shownAt = performance.now();
        status.textContent = '';
        buttons.forEach((b) => { b.disabled = false; });
        if (data.exposure_ms > 0) {
          const hide = () => {
            if (answered) return;
            if (performance.now() - shownAt < data.exposure_ms - 8) { requestAnimationFrame(hide); return; }
            hiddenAt = performance.now();
            slots.forEach((slot) => slot.replaceChildren(data.mask_ms > 0 ? mask() : ''));
            if (data.mask_ms > 0) {
              const unmask = () => {
                if (performance.now() - hiddenAt < data.mask_ms - 8) { requestAnimationFrame(unmask); return; }
                slots.forEach((slot) => slot.replaceChildren());
              };
              requestAnimationFrame(unmask);
            }
            status.textContent = data.prompt;
          };
          requestAnimationFrame(hide);
        }
      });
    });
  }), () => { status.textContent = 'The images could not be loaded. Please reload the page.'; });

  box.studyCleanup = () => {
    if (onResize) window.removeEventListener('resize', onResize);
    window.removeEventListener('blur', onBlur);
    document.removeEventListener('visibilitychange', onVisibility);
    window.removeEventListener('keydown', onKey, true);
  };
  return box.studyCleanup;
}
"""

# Single design, "buttons" presentation: R and G press the Real / Generated buttons of the current
# trial (the arrow keys are the buttons' own shortcuts). Renders nothing.
_KEYS_JS = """
export default function (component) {
  const { data } = component;
  const onKey = (event) => {
    const answer = data.real_keys.includes(event.key) ? 'real'
      : data.fake_keys.includes(event.key) ? 'fake' : undefined;
    if (answer === undefined || event.repeat || event.ctrlKey || event.metaKey || event.altKey) return;
    const target = event.target;
    if (target && (target.isContentEditable || ['INPUT', 'TEXTAREA', 'SELECT'].includes(target.tagName))) return;
    event.preventDefault();
    event.stopImmediatePropagation();   // Streamlit would rerun the page on R
    const button = document.querySelector(`.st-key-answer-${data.trial}-${answer} button`);
    if (button && !button.disabled) button.click();
  };
  window.addEventListener('keydown', onKey, true);
  return () => window.removeEventListener('keydown', onKey, true);
}
"""

# Tuples, not lists or dicts, as values of the components' data: Streamlit checks list and dict values
# for dataframes, which imports pandas (~0.3 s) when the first trial of a server process is drawn.
PAIRED_CHOICES = ({"value": "left", "label": "Left is real (←)", "keys": ("ArrowLeft", "f", "F")},
                  {"value": "right", "label": "Right is real (→)", "keys": ("ArrowRight", "j", "J")})
SINGLE_CHOICES = ({"value": "real", "label": "Real (← or R)", "keys": ("ArrowLeft", "r", "R")},
                  {"value": "fake", "label": "Generated (→ or G)", "keys": ("ArrowRight", "g", "G")})


COMPONENT_NAME = "study_app_timed_pair"


@st.cache_resource(show_spinner=False)
def _component():
    # Registered once per server process: registering the same name again only logs a warning.
    return st.components.v2.component(COMPONENT_NAME, css=_CSS, js=_JS)


@st.cache_resource(show_spinner=False)
def _keys_component():
    return st.components.v2.component("study_app_answer_keys", js=_KEYS_JS)


def data_url(data: bytes, image_format: str) -> str:
    return f"data:{_MIME.get(image_format.upper(), 'application/octet-stream')};base64,{base64.b64encode(data).decode()}"


def trial_data(*, trial_index: int, images: tuple[str, ...], exposure_ms: int, mask_ms: int,
               min_window: tuple[int, int] = (0, 0)) -> dict:
    """What the component gets for one trial: one image (single design) or two (paired).
    min_window = (width, height) in CSS px the window must reach before the trial starts; 0 = no limit."""
    paired = len(images) == 2
    return {"trial": trial_index, "images": tuple(images), "choices": PAIRED_CHOICES if paired else SINGLE_CHOICES,
            "prompt": "Which one was real?" if paired else "Real or generated?",
            "loading": "Loading the images…" if paired else "Loading the image…",
            "exposure_ms": exposure_ms, "mask_ms": mask_ms,
            "min_width": min_window[0], "min_height": min_window[1]}


def timed_pair(*, key: str, trial_index: int, left: str, right: str, exposure_ms: int, mask_ms: int, on_answer,
               min_window: tuple[int, int] = (0, 0)) -> None:
    """Mount the component for one pair; on_answer() runs when the participant answers."""
    _component()(key=key, data=trial_data(trial_index=trial_index, images=(left, right), exposure_ms=exposure_ms,
                                          mask_ms=mask_ms, min_window=min_window),
                 on_answer_change=on_answer, height="content")


def timed_single(*, key: str, trial_index: int, image: str, exposure_ms: int, mask_ms: int, on_answer,
                 min_window: tuple[int, int] = (0, 0)) -> None:
    """Mount the component for one image (single design); on_answer() runs when the participant answers."""
    _component()(key=key, data=trial_data(trial_index=trial_index, images=(image,), exposure_ms=exposure_ms,
                                          mask_ms=mask_ms, min_window=min_window),
                 on_answer_change=on_answer, height="content")


def window_requirement(min_width: int, min_height: int) -> str:
    """The minimum window in words ("" when there is none), e.g. "at least 1024×700 px"."""
    if min_width and min_height:
        return f"at least {min_width}×{min_height} px"
    if min_width:
        return f"at least {min_width} px wide"
    return f"at least {min_height} px tall" if min_height else ""


def answer_keys(*, key: str, trial_index: int) -> None:
    """R / G for the single design's Real / Generated buttons of this trial."""
    _keys_component()(key=key, data={"trial": trial_index, "real_keys": ("r", "R"), "fake_keys": ("g", "G")})


def answer_payload(key: str) -> dict | None:
    """The component's last answer for this key (inside the on_answer callback)."""
    state = st.session_state.get(key)
    if state is None:
        return None
    value = state.get("answer") if hasattr(state, "get") else getattr(state, "answer", None)
    return value if isinstance(value, dict) else None
