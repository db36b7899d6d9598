// One trial of a study, in the browser (study_app/views/component.py mounts it with st.components.v2):
// - the image(s) arrive as data: URLs of their original bytes, are decoded first and attached on one
//   animation frame, and are drawn at an integer multiple of their size in device pixels (an integer
//   fraction when even 1x does not fit and data.narrow is "fit"), with nearest-neighbour or smooth
//   enlarging (data.filter), sized so that the images and the answer buttons fit in the window;
// - the response time runs from the first painted frame (performance.now()); an answer sooner than
//   data.min_response_ms after it is refused, counted, and restarts the wait;
// - an answer key counts only when pressed anew: auto-repeat and a key still held from the previous
//   trial are ignored;
// - optionally the images hide after data.exposure_ms behind a noise mask for data.mask_ms;
// - focus losses are counted; the trial waits for a window of data.min_width x data.min_height.
// The notice line under the buttons has a fixed height, so messages never move the buttons.
const HELD = '__studyHeldKeys';

function keyTracker() {
  // Installed once per page: which keys are down. A keydown of a key already down is marked, so that
  // a trial shown while a key is held does not take that key until it has been released.
  if (!window[HELD]) {
    const held = new Set();
    window.addEventListener('keydown', (e) => { e.studyHeld = e.repeat || held.has(e.key); held.add(e.key); }, true);
    window.addEventListener('keyup', (e) => { held.delete(e.key); }, true);
    window.addEventListener('blur', () => held.clear());
    window[HELD] = held;
  }
  return window[HELD];
}

export default function (component) {
  const { data, setTriggerValue, parentElement } = component;
  keyTracker();
  const existing = parentElement.querySelector('.study-trial');
  // Reruns re-invoke this function; the same trial must keep its clock and its one answer.
  // Streamlit keeps only the latest call's cleanup, so a rerun hands back the one of the first call.
  if (existing && existing.dataset.trial === String(data.trial)) return existing.studyCleanup;
  if (existing) {           // another trial in the same place: its listeners go with it
    existing.studyCleanup();
    existing.remove();
  }

  const paired = data.images.length === 2;
  const t = data.texts;
  const button = (c) => `<button type="button" data-answer="${c.value}" disabled>${c.label}</button>`;
  const box = document.createElement('div');
  box.className = `study-trial ${paired ? 'pair' : 'single'}`;
  box.dataset.trial = String(data.trial);
  box.innerHTML = (paired
    ? `<div class="imgs">${data.images.map((_, i) =>
        `<figure><div class="slot" data-slot="${i}"></div>${button(data.choices[i])}</figure>`).join('')}</div>`
    : `<div class="imgs"><figure><div class="slot" data-slot="0"></div></figure></div>
       <div class="choices">${data.choices.map(button).join('')}</div>`)
    + `<p class="status" role="status" aria-live="polite"></p>`;
  parentElement.appendChild(box);
  const slots = [...box.querySelectorAll('.slot')];
  const buttons = [...box.querySelectorAll('button')];
  const status = box.querySelector('.status');
  const say = (text, kind = '') => { status.textContent = text || ''; status.dataset.kind = kind; };
  say(data.notice || t.loading, data.notice ? 'notice' : '');
  const keys = {};
  data.choices.forEach((c) => c.keys.forEach((k) => { keys[k] = c.value; }));

  let shownAt = null, hiddenAt = null, answered = false, focusLosses = 0, tooFast = 0, earliest = 0;
  let scale = null;
  const onBlur = () => { if (shownAt !== null && !answered) focusLosses += 1; };
  const onVisibility = () => { if (document.hidden) onBlur(); };

  const answer = (value) => {
    if (answered || shownAt === null) return;
    const now = performance.now();
    if (now < earliest) {          // too soon after the images appeared (or after the last refusal)
      tooFast += 1;
      earliest = now + data.min_response_ms;
      say(t.too_fast, 'notice');
      return;
    }
    answered = true;
    buttons.forEach((b) => { b.disabled = true; });
    say(t.saving);
    setTriggerValue('answer', {
      trial: data.trial, answer: value, rt_ms: now - shownAt,
      exposure_ms: (hiddenAt === null ? now : hiddenAt) - shownAt,
      focus_losses: focusLosses, window: `${window.innerWidth}x${window.innerHeight}`,
      scale, too_fast: tooFast,
    });
  };
  const onKey = (event) => {
    if (!box.isConnected) { box.studyCleanup(); return; }
    if (!(event.key in keys) || event.ctrlKey || event.metaKey || event.altKey) return;
    const target = event.composedPath ? event.composedPath()[0] : event.target;
    if (target && (target.isContentEditable || ['INPUT', 'TEXTAREA', 'SELECT'].includes(target.tagName))) return;
    event.preventDefault();
    // R would also make Streamlit rerun the page. Not stopImmediatePropagation: a newer trial's listener on
    // window must still see the key.
    event.stopPropagation();
    if (event.repeat || event.studyHeld) return;   // held down, not pressed anew
    answer(keys[event.key]);
  };
  buttons.forEach((b) => b.addEventListener('click', () => answer(b.dataset.answer)));
  window.addEventListener('blur', onBlur);
  document.addEventListener('visibilitychange', onVisibility);
  window.addEventListener('keydown', onKey, true);

  // -- size: an integer number of device pixels per image pixel ------------------------------------
  const BELOW = paired ? 112 : 124;   // px under the images: answer button(s), the notice line, margins
  const SINGLE_MAX_CSS_PX = 448;      // one image alone would otherwise fill the column
  const layout = () => {
    const dpr = window.devicePixelRatio || 1;
    const gap = paired ? parseFloat(getComputedStyle(box.querySelector('.imgs')).columnGap) || 0 : 0;
    const width = paired ? (box.clientWidth - gap) / 2 : Math.min(box.clientWidth, SINGLE_MAX_CSS_PX);
    const top = box.getBoundingClientRect().top + window.scrollY;
    const height = Math.max(0, window.innerHeight - top - BELOW);
    const w = Math.max(...data.images.map((im) => im.width)), h = Math.max(...data.images.map((im) => im.height));
    let k = Math.floor(Math.min(width * dpr / w, height * dpr / h));
    if (data.max_px) k = Math.min(k, Math.max(1, Math.floor(data.max_px * dpr / Math.max(w, h))));
    if (k >= 1) return { scale: k, dpr };
    if (data.narrow === 'refuse') return null;
    const d = Math.ceil(Math.max(w / (width * dpr), h / (height * dpr), 1));
    return { scale: 1 / d, dpr };
  };
  const applyLayout = (fit) => {
    scale = fit.scale;
    slots.forEach((slot, i) => {
      const im = data.images[i];
      slot.style.width = `${im.width * fit.scale / fit.dpr}px`;
      slot.style.height = `${im.height * fit.scale / fit.dpr}px`;
    });
    box.classList.toggle('nearest', data.filter === 'nearest' && fit.scale > 1);
  };

  const mask = () => {
    const canvas = document.createElement('canvas');
    canvas.width = 16; canvas.height = 16;
    const ctx = canvas.getContext('2d');
    for (let y = 0; y < 16; y++) for (let x = 0; x < 16; x++) {
      const v = Math.floor(Math.random() * 256);
      ctx.fillStyle = `rgb(${v},${Math.floor(Math.random() * 256)},${255 - v})`;
      ctx.fillRect(x, y, 1, 1);
    }
    canvas.className = 'mask';
    return canvas;
  };
  const load = (src) => new Promise((resolve, reject) => {
    const img = new Image();
    img.alt = '';
    img.draggable = false;
    img.onload = () => (img.decode ? img.decode().then(() => resolve(img), () => resolve(img)) : resolve(img));
    img.onerror = reject;
    img.src = src;
  });

  // The trial, and its clock, start only once the window is large enough (data.min_width x
  // data.min_height, and with data.narrow = "refuse" large enough for the images at 1x).
  const minW = data.min_width || 0, minH = data.min_height || 0;
  const blocker = () => {
    if (window.innerWidth < minW || window.innerHeight < minH) {
      const need = minW && minH ? `${minW}×${minH} px` : minW ? `${minW} px wide` : `${minH} px tall`;
      return t.too_small.replace('{need}', need).replace('{now}', `${window.innerWidth}×${window.innerHeight}`);
    }
    return layout() === null ? t.refuse_small.replace('{now}', `${window.innerWidth}×${window.innerHeight}`) : null;
  };
  const onResize = () => {
    if (!box.isConnected) return;
    if (shownAt === null) return;        // before the start, whenBigEnough listens
    const fit = layout();
    if (fit) applyLayout(fit);
  };
  window.addEventListener('resize', onResize);
  let waitResize = null;
  const whenBigEnough = (start) => {
    const problem = blocker();
    if (!problem) { start(); return; }
    box.classList.add('too-small');
    say(problem, 'notice');
    waitResize = () => {
      if (!box.isConnected) return;
      const still = blocker();
      if (still) { say(still, 'notice'); return; }
      window.removeEventListener('resize', waitResize);
      waitResize = null;
      box.classList.remove('too-small');
      say(data.notice || t.loading, data.notice ? 'notice' : '');
      start();
    };
    window.addEventListener('resize', waitResize);
  };

  // Sized before the images arrive: grey placeholders hold the buttons where they will stay.
  applyLayout(layout() || { scale: 1, dpr: window.devicePixelRatio || 1 });
  Promise.all(data.images.map((im) => load(im.src))).then((images) => whenBigEnough(() => {
    applyLayout(layout() || { scale: 1, dpr: window.devicePixelRatio || 1 });
    requestAnimationFrame(() => {
      images.forEach((img, i) => slots[i].appendChild(img));
      requestAnimationFrame(() => {            // the frame with every image has been painted
        shownAt = performance.now();
        earliest = shownAt + data.min_response_ms;
        if (!data.notice) say('');
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
            if (status.dataset.kind !== 'notice') say(data.prompt);
          };
          requestAnimationFrame(hide);
        }
      });
    });
  }), () => { say(t.load_error, 'notice'); });

  box.studyCleanup = () => {
    if (waitResize) window.removeEventListener('resize', waitResize);
    window.removeEventListener('resize', onResize);
    window.removeEventListener('blur', onBlur);
    document.removeEventListener('visibilitychange', onVisibility);
    window.removeEventListener('keydown', onKey, true);
  };
  return box.studyCleanup;
}
