// A step's executed notebook: the kernel sends its path relative to the notebook's directory;
// the widget turns it into a document URL and a contents-API URL of the page's server.
import assert from "node:assert/strict";
import { test } from "node:test";

import { logic } from "./load_widget.mjs";

const { documentUrls } = logic;
const RECORD = ".mlpipe/runs/20240501-101500-ab12cd/fit/output.ipynb";

test("JupyterLab: next to the notebook, in the page's route", () => {
  assert.deepEqual(documentUrls(RECORD, "/lab/tree/examples/wine_quality.ipynb"), {
    href: `/lab/tree/examples/${RECORD}`,
    api: `/api/contents/examples/${RECORD}?content=0`,
  });
});

test("a workspace, /doc and Notebook 7 keep their route", () => {
  assert.equal(documentUrls(RECORD, "/lab/workspaces/link/tree/link.ipynb").href,
    `/lab/workspaces/link/tree/${RECORD}`);
  assert.equal(documentUrls(RECORD, "/doc/tree/a/b.ipynb").href, `/doc/tree/a/${RECORD}`);
  assert.deepEqual(documentUrls(RECORD, "/notebooks/nb7.ipynb"),
    { href: `/notebooks/${RECORD}`, api: `/api/contents/${RECORD}?content=0` });
});

test("a server under a base URL (JupyterHub)", () => {
  assert.deepEqual(documentUrls("log.txt", "/user/ann/lab/tree/work/nb.ipynb"),
    { href: "/user/ann/lab/tree/work/log.txt", api: "/user/ann/api/contents/work/log.txt?content=0" });
});

test("`..` and `.` resolve against the notebook's directory; segments are encoded", () => {
  assert.equal(documentUrls("../shared/./runs/r 1/out#.ipynb", "/lab/tree/a/b/nb.ipynb").href,
    "/lab/tree/a/shared/runs/r%201/out%23.ipynb");
  assert.equal(documentUrls("../../x.ipynb", "/lab/tree/a/nb.ipynb"), null); // above the root
});

test("no document URL outside JupyterLab and Notebook 7, or for no path", () => {
  assert.equal(documentUrls(RECORD, "/vscode/webview/index.html"), null);
  assert.equal(documentUrls(RECORD, "/lab"), null);
  assert.equal(documentUrls("", "/lab/tree/nb.ipynb"), null);
  assert.equal(documentUrls(null, "/lab/tree/nb.ipynb"), null);
});
