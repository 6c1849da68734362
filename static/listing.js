// listing.js: progressive enhancement for mapserve's directory listing (live filter, local times, download links).
(function () {
  'use strict';

  // Show each timestamp in the viewer's own time zone; the full date goes in the tooltip.
  var pad = function (n) { return (n < 10 ? '0' : '') + n; };
  var fullFmt = null;
  try {
    fullFmt = new Intl.DateTimeFormat(undefined, { dateStyle: 'full', timeStyle: 'long' });
  } catch (e) { /* very old browser: fall back to Date#toString */ }
  var times = document.querySelectorAll('#listing time[datetime]');
  for (var i = 0; i < times.length; i++) {
    var d = new Date(times[i].getAttribute('datetime'));
    if (isNaN(d.getTime())) continue;
    times[i].textContent = d.getFullYear() + '-' + pad(d.getMonth() + 1) + '-' + pad(d.getDate()) +
      ' ' + pad(d.getHours()) + ':' + pad(d.getMinutes());
    times[i].title = fullFmt ? fullFmt.format(d) : d.toString();
  }

  // Download links: the page carries the file's own URL with a `download`
  // attribute (a crawler such as `wget -r` then meets one URL per file); here
  // they become the `?download` URL, which also names the file when the link
  // is copied, shared or opened in a new tab.
  var dls = document.querySelectorAll('#listing td.dl a[download]');
  for (var m = 0; m < dls.length; m++) {
    var href = dls[m].getAttribute('href');
    if (href && href.indexOf('?') < 0) dls[m].setAttribute('href', href + '?download');
  }

  var input = document.getElementById('filter');
  var table = document.getElementById('listing');
  if (!input || !table || !table.tBodies.length) return;
  var status = document.getElementById('filter-status');
  var nomatch = document.getElementById('nomatch');

  // Cache the rows and their names once; the parent row is never filtered.
  var norm = function (s) { s = s.toLowerCase(); return s.normalize ? s.normalize('NFC') : s; };
  var rows = [], names = [], shown = [];
  var all = table.tBodies[0].rows;
  for (var j = 0; j < all.length; j++) {
    if (all[j].classList.contains('parent')) continue;
    rows.push(all[j]);
    var span = all[j].querySelector('td.name span');
    names.push(norm(span ? span.textContent : ''));
    shown.push(!all[j].hidden);
  }

  var frame = 0;
  function apply() {
    frame = 0;
    var q = norm(input.value);
    var count = 0;
    // Only write to the DOM where a row's state changes: no reads, so no forced layout.
    for (var k = 0; k < rows.length; k++) {
      var ok = names[k].indexOf(q) !== -1;
      if (ok) count++;
      if (ok !== shown[k]) { shown[k] = ok; rows[k].hidden = !ok; }
    }
    if (nomatch) nomatch.hidden = !q || count > 0;
    if (status) status.textContent = q ? count + ' of ' + rows.length + ' shown' : '';
  }
  function schedule() {
    if (!frame) frame = window.requestAnimationFrame(apply);
  }

  input.addEventListener('input', schedule);
  input.addEventListener('keydown', function (e) {
    if (e.key === 'Escape' && input.value) {
      e.preventDefault();
      input.value = '';
      if (frame) window.cancelAnimationFrame(frame);
      apply();
    }
  });

  // "/" focuses the filter unless the user is typing somewhere.
  document.addEventListener('keydown', function (e) {
    if (e.key !== '/' || e.ctrlKey || e.metaKey || e.altKey || e.defaultPrevented) return;
    var el = document.activeElement;
    if (el && (el.isContentEditable || /^(INPUT|TEXTAREA|SELECT)$/.test(el.tagName))) return;
    e.preventDefault();
    input.focus();
    input.select();
  });

  // A name cut short by the column shows in full as a tooltip (set on first
  // hover, so loading a long listing reads no layout).
  table.addEventListener('mouseover', function (e) {
    var a = e.target.closest ? e.target.closest('td.name a') : null;
    if (!a || a.title) return;
    var s = a.querySelector('span');
    if (s && s.scrollWidth > s.clientWidth) a.title = s.textContent;
  });

  input.hidden = false;
  input.title = 'Filter entries (press / to focus, Escape to clear)';
  if (input.value) apply(); // the browser may restore a typed value on back/forward
})();
