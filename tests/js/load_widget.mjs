// The widget's ES module as node sees it. widget.py joins static/dag_logic.js, dag_draw.js and
// dag_widget.js into the one module anywidget loads; these tests import the first part alone,
// the states and pure functions, whose header says it needs nothing from the others. The files
// ship as `.js` inside the Python package, where no package.json marks them as ESM, so the part
// is imported from its source through a data: URL: byte for byte what widget.py joins, nothing
// copied or built. The import itself proves the part touches no `document` or `location` when
// it loads. (tests/unit/test_widget_js.py imports the joined module the same way.)
import { readdirSync, readFileSync } from "node:fs";

const STATIC = new URL("../../mlpipe_jupyter/ui/static/", import.meta.url);
const read = (name) => readFileSync(new URL(name, STATIC), "utf8");

export const logic = await import(
  `data:text/javascript;base64,${Buffer.from(read("dag_logic.js")).toString("base64")}`);
// the code of every part, for the checks that read the source (state names)
export const source = readdirSync(STATIC).filter((n) => n.endsWith(".js")).sort()
  .map(read).join("\n");
