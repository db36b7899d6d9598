// The timed trial (design.presentation = "timed"): preload the image(s), show them on one animation
// frame, time the answer with performance.now(), optionally hide them after data.exposure_ms behind a
// noise mask for data.mask_ms, count focus losses, and hold the trial back until the window reaches
// data.min_width x data.min_height. Mounted by study_app/views/timed.py (st.components.v2).
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
