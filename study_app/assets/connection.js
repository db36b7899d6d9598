// Mounted once on the participant page (study_app/views/component.py): checks the server's health
// endpoint every few seconds and, while it does not answer, covers the page with a calm notice that
// the answers are saved, in place of Streamlit's generic connection-error box. Renders nothing itself.
export default function (component) {
  const { data } = component;
  if (window.__studyConnection) return undefined;
  window.__studyConnection = true;
  const style = document.createElement('style');
  style.textContent = `body.study-offline div[role="dialog"], body.study-offline [data-testid="stStatusWidget"]
    { display: none !important; }
    #study-offline { position: fixed; inset: 0; z-index: 2147483647; display: none; align-items: center;
      justify-content: center; background: rgba(255, 255, 255, .94); font: 1.05rem/1.5 sans-serif; color: #31333f; }
    body.study-offline #study-offline { display: flex; }
    #study-offline div { max-width: 32rem; padding: 1.5rem 2rem; border-radius: .75rem; background: #f0f2f6; }`;
  document.head.appendChild(style);
  const notice = document.createElement('div');
  notice.id = 'study-offline';
  notice.setAttribute('role', 'alert');
  notice.innerHTML = `<div><strong>${data.title}</strong><p>${data.body}</p></div>`;
  document.body.appendChild(notice);
  const base = window.location.pathname.replace(/[^/]*$/, '');
  const health = new URL(`${base}_stcore/health`, window.location.origin).href;
  let failures = 0;
  const check = async () => {
    const abort = new AbortController();
    const timer = setTimeout(() => abort.abort(), data.timeout_ms);
    try {
      const response = await fetch(health, { cache: 'no-store', signal: abort.signal });
      failures = response.ok ? 0 : failures + 1;
    } catch (err) {
      failures += 1;
    } finally {
      clearTimeout(timer);
    }
    document.body.classList.toggle('study-offline', failures >= data.failures);
  };
  setInterval(check, data.every_ms);
  return undefined;
}
