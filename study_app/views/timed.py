"""In-browser trial component (design.presentation = "timed"), built on st.components.v2.

Streamlit draws from the server, so it cannot time what the participant sees. This component does
the timing in the browser: both images are preloaded and decoded, attached on the same animation
frame, optionally hidden after `exposure_ms` (then a noise mask for `mask_ms`), and the response
time is measured with performance.now() from the first frame the pair was on screen. Window blur
and tab switches during the trial are counted. One answer per pair: the component locks itself
after the first click or key press, and the server still accepts only the current trial.
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
"""

_JS = """
export default function (component) {
  const { data, setTriggerValue, parentElement } = component;
  const existing = parentElement.querySelector('.study-pair');
  // Reruns re-invoke this function; the same pair must keep its clock and its one answer.
  if (existing && existing.dataset.trial === String(data.trial)) return;
  if (existing) existing.remove();

  const box = document.createElement('div');
  box.className = 'study-pair';
  box.dataset.trial = String(data.trial);
  box.innerHTML = `
    <div class="imgs">
      <figure><div class="slot" data-slot="left"></div>
        <button type="button" data-side="left" disabled>Left is real (←)</button></figure>
      <figure><div class="slot" data-slot="right"></div>
        <button type="button" data-side="right" disabled>Right is real (→)</button></figure>
    </div>
    <p class="status">Loading the images…</p>`;
  parentElement.appendChild(box);
  const slots = { left: box.querySelector('[data-slot="left"]'), right: box.querySelector('[data-slot="right"]') };
  const buttons = [...box.querySelectorAll('button')];
  const status = box.querySelector('.status');

  let shownAt = null, hiddenAt = null, answered = false, focusLosses = 0;
  const onBlur = () => { if (shownAt !== null && !answered) focusLosses += 1; };
  const onVisibility = () => { if (document.hidden) onBlur(); };

  const answer = (side) => {
    if (answered || shownAt === null) return;
    answered = true;
    const now = performance.now();
    buttons.forEach((b) => { b.disabled = true; });
    status.textContent = 'Saving…';
    setTriggerValue('answer', {
      trial: data.trial, side, rt_ms: now - shownAt,
      exposure_ms: (hiddenAt === null ? now : hiddenAt) - shownAt,
      focus_losses: focusLosses, window: `${window.innerWidth}x${window.innerHeight}`,
    });
  };
  const onKey = (event) => {
    if (event.repeat) return;
    if (event.key === 'ArrowLeft' || event.key === 'f' || event.key === 'F') answer('left');
    if (event.key === 'ArrowRight' || event.key === 'j' || event.key === 'J') answer('right');
  };
  buttons.forEach((b) => b.addEventListener('click', () => answer(b.dataset.side)));
  window.addEventListener('blur', onBlur);
  document.addEventListener('visibilitychange', onVisibility);
  document.addEventListener('keydown', onKey);

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

  Promise.all([load(data.left), load(data.right)]).then(([left, right]) => {
    requestAnimationFrame(() => {
      slots.left.appendChild(left);
      slots.right.appendChild(right);
      requestAnimationFrame(() => {            // the frame with both images has been painted
        shownAt = performance.now();
        status.textContent = '';
        buttons.forEach((b) => { b.disabled = false; });
        if (data.exposure_ms > 0) {
          const hide = () => {
            if (answered) return;
            if (performance.now() - shownAt < data.exposure_ms - 8) { requestAnimationFrame(hide); return; }
            hiddenAt = performance.now();
            slots.left.replaceChildren(data.mask_ms > 0 ? mask() : '');
            slots.right.replaceChildren(data.mask_ms > 0 ? mask() : '');
            if (data.mask_ms > 0) {
              const unmask = () => {
                if (performance.now() - hiddenAt < data.mask_ms - 8) { requestAnimationFrame(unmask); return; }
                slots.left.replaceChildren(); slots.right.replaceChildren();
              };
              requestAnimationFrame(unmask);
            }
            status.textContent = 'Which one was real?';
          };
          requestAnimationFrame(hide);
        }
      });
    });
  }, () => { status.textContent = 'The images could not be loaded. Please reload the page.'; });

  return () => {
    window.removeEventListener('blur', onBlur);
    document.removeEventListener('visibilitychange', onVisibility);
    document.removeEventListener('keydown', onKey);
  };
}
"""


@st.cache_resource(show_spinner=False)
def _component():
    # Registered once per server process: registering the same name again only logs a warning.
    return st.components.v2.component("study_app_timed_pair", css=_CSS, js=_JS)


def data_url(data: bytes, image_format: str) -> str:
    return f"data:{_MIME.get(image_format.upper(), 'application/octet-stream')};base64,{base64.b64encode(data).decode()}"


def timed_pair(*, key: str, trial_index: int, left: str, right: str, exposure_ms: int, mask_ms: int, on_answer) -> None:
    """Mount the component for one pair; on_answer() runs when the participant answers."""
    _component()(key=key, data={"trial": trial_index, "left": left, "right": right,
                                 "exposure_ms": exposure_ms, "mask_ms": mask_ms},
                 on_answer_change=on_answer, height="content")


def answer_payload(key: str) -> dict | None:
    """The component's last answer for this key (inside the on_answer callback)."""
    state = st.session_state.get(key)
    if state is None:
        return None
    value = state.get("answer") if hasattr(state, "get") else getattr(state, "answer", None)
    return value if isinstance(value, dict) else None
