// Forms marked data-confirm (delete a photo, delete an album) ask first; without JavaScript they submit
// straight away, as the page says beside the button.
(function () {
  "use strict";
  document.addEventListener("submit", function (event) {
    var form = event.target;
    if (form.dataset && form.dataset.confirm && !window.confirm(form.dataset.confirm)) {
      event.preventDefault();
    }
  });
})();
