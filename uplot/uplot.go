// Package uplot embeds uPlot, the small charting library (MIT, by Leon
// Sorokin; npm uplot 1.6.32, LICENSE beside this file) that draws the
// dashboard's charts and bench's HTML report, as published: nothing is
// fetched at run time and nothing is built.
package uplot

import _ "embed"

// Version is the embedded release.
const Version = "1.6.32"

// JS is uPlot.iife.min.js, which defines the global uPlot.
//
//go:embed uplot.iife.min.js
var JS []byte

// CSS is uPlot.min.css.
//
//go:embed uplot.min.css
var CSS []byte
