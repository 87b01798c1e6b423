// The widget's ES module as node sees it. It ships as a `.js` file inside the Python package,
// where no package.json marks it as ESM, so it is imported from its source through a data: URL:
// the file that anywidget serves, byte for byte, with nothing copied or built. The import
// itself proves the module touches no `document` or `location` when it loads.
import { readFileSync } from "node:fs";

export const WIDGET_PATH = new URL("../../mlpipe_jupyter/ui/static/dag_widget.js", import.meta.url);
export const source = readFileSync(WIDGET_PATH, "utf8");
export const widget = await import(
  `data:text/javascript;base64,${Buffer.from(source).toString("base64")}`);
