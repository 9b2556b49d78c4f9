/* dashboard.h: the live dashboard page served at / (static HTML + JS, no external assets). */
#ifndef SPINE_DASHBOARD_H
#define SPINE_DASHBOARD_H
extern const char dashboard_html[];
#endif
