// Single design, "buttons" presentation: R and G press the Real / Generated buttons of the current
// trial (the arrow keys are the buttons' own shortcuts). Renders nothing. Mounted by
// study_app/views/timed.py (st.components.v2).
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
