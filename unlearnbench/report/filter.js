// The page's switch and filters (index.html inlines this file after sort.js; no network, no library).
// A table belongs to a view (data-view: free, oracle, paper); the switch shows the oracle-free tables,
// the ORACLE ones, or both; the paper's rows show in every view. A row shows when its family is
// checked and, unless it is an anchor (the Original and Retrain rows), it matches the rule,
// the used splits and the text typed.
(function () {
  var form = document.getElementById('filters');
  if (!form) { return; }
  function value(id) { var el = document.getElementById(id); return el ? el.value : ''; }
  function apply() {
    var view = form.querySelector('input[name="view"]:checked');
    view = view ? view.value : 'both';
    var fams = {};
    form.querySelectorAll('input.f-fam').forEach(function (c) { fams[c.value] = c.checked; });
    var rule = value('f-rule'), splits = value('f-splits'), text = value('f-text').trim().toLowerCase();
    var shown = 0, total = 0;
    document.querySelectorAll('div.tw[data-view]').forEach(function (box) {
      var v = box.getAttribute('data-view');
      var on = v === 'paper' || view === 'both' || v === view;
      box.hidden = !on;
      box.querySelectorAll('tbody tr[data-family]').forEach(function (tr) {
        var ok = fams[tr.getAttribute('data-family')] !== false;
        if (ok && !tr.hasAttribute('data-anchor')) {
          ok = (!rule || tr.getAttribute('data-rule') === rule)
            && (!splits || tr.getAttribute('data-splits') === splits)
            && (!text || tr.getAttribute('data-label').indexOf(text) >= 0);
        }
        tr.hidden = !ok;
        if (on) { total += 1; if (ok) { shown += 1; } }
      });
    });
    var count = document.getElementById('f-count');
    if (count) { count.textContent = shown + ' of ' + total + ' rows shown'; }
  }
  form.addEventListener('change', apply);
  form.addEventListener('input', apply);
  apply();
})();
